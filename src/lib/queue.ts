// The bounded queue remote writes go through (as bazel-remote's upload
// queue): at most `concurrency` tasks run, at most `capacity` wait.
// `push` waits for room (backpressure: a save cannot outrun the network
// and buffer without end); `offer` drops when full (opportunistic
// write-back must never slow a read) and counts the drop.

export interface QueueOptions {
  concurrency: number;
  capacity: number;
  onDrop?: () => void;
}

type Task = () => Promise<void>;

export class BoundedQueue {
  private running = 0;
  private readonly waiting: Task[] = [];
  private readonly roomWaiters: (() => void)[] = [];
  private readonly idleWaiters: (() => void)[] = [];
  /** Errors of tasks that failed (tasks report their own; this keeps the count honest). */
  readonly errors: unknown[] = [];
  dropped = 0;

  constructor(private readonly opts: QueueOptions) {}

  get size(): number {
    return this.waiting.length + this.running;
  }

  /** Enqueues a task, waiting while the queue is full. */
  async push(task: Task): Promise<void> {
    while (this.waiting.length >= this.opts.capacity) {
      await new Promise<void>((r) => this.roomWaiters.push(r));
    }
    this.waiting.push(task);
    this.pump();
  }

  /** Enqueues a task if there is room; returns false (and counts a drop) otherwise. */
  offer(task: Task): boolean {
    if (this.waiting.length >= this.opts.capacity) {
      this.dropped++;
      this.opts.onDrop?.();
      return false;
    }
    this.waiting.push(task);
    this.pump();
    return true;
  }

  /** Resolves when every task enqueued so far has finished. */
  async drain(): Promise<void> {
    if (this.size === 0) return;
    await new Promise<void>((r) => this.idleWaiters.push(r));
  }

  private pump(): void {
    while (this.running < this.opts.concurrency && this.waiting.length > 0) {
      const task = this.waiting.shift()!;
      this.running++;
      this.roomWaiters.shift()?.();
      void task()
        .catch((e: unknown) => {
          this.errors.push(e);
        })
        .finally(() => {
          this.running--;
          this.pump();
          if (this.size === 0) for (const w of this.idleWaiters.splice(0)) w();
        });
    }
  }
}

/** Runs `fn` over `items` with at most `limit` in flight; rejects with the first error after all settle. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  let firstError: { e: unknown } | undefined;
  const worker = async (): Promise<void> => {
    while (next < items.length && !firstError) {
      const i = next++;
      try {
        out[i] = await fn(items[i]!, i);
      } catch (e) {
        firstError ??= { e };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  if (firstError) throw firstError.e;
  return out;
}

/** Waits for every promise, then rejects with the first failure: nothing is left running behind an error. */
export async function settleAll<T extends readonly unknown[]>(promises: readonly [...{ [K in keyof T]: Promise<T[K]> }]): Promise<T> {
  const settled = await Promise.allSettled(promises);
  const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
  return settled.map((r) => (r as PromiseFulfilledResult<unknown>).value) as unknown as T;
}
