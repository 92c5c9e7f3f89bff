// Simulated time: a binary heap of callbacks ordered by (time, insertion),
// so equal times run in the order they were scheduled and a run repeats.

interface Entry {
  t: number;
  seq: number;
  fn: () => void;
}

export class EventQueue {
  private readonly heap: Entry[] = [];
  private seq = 0;
  /** The current simulated time, in ms. */
  now = 0;

  at(t: number, fn: () => void): void {
    const h = this.heap;
    const e = { t: Math.max(t, this.now), seq: this.seq++, fn };
    let i = h.push(e) - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(e, h[parent]!)) break;
      h[i] = h[parent]!;
      i = parent;
    }
    h[i] = e;
  }

  private halted = false;

  /** Stops run() after the current event. */
  halt(): void {
    this.halted = true;
  }

  /** Runs events until none is left, halt(), or the time passes `untilMs`; returns how many ran. */
  run(untilMs = Infinity): number {
    let ran = 0;
    this.halted = false;
    while (!this.halted && this.heap.length > 0 && this.heap[0]!.t <= untilMs) {
      const e = this.pop();
      this.now = e.t;
      e.fn();
      ran++;
    }
    return ran;
  }

  private pop(): Entry {
    const h = this.heap;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= h.length) break;
        const r = l + 1;
        const c = r < h.length && before(h[r]!, h[l]!) ? r : l;
        if (!before(h[c]!, last)) break;
        h[i] = h[c]!;
        i = c;
      }
      h[i] = last;
    }
    return top;
  }
}

function before(a: Entry, b: Entry): boolean {
  return a.t < b.t || (a.t === b.t && a.seq < b.seq);
}
