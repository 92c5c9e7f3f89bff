// The bounded cache of decoded trees: least recently used out first, by weight.
import { describe, expect, it } from 'vitest';
import { LruMap } from '../../src/lib/lru.js';

describe('LruMap', () => {
  it('forgets the least recently used entries once the total weight passes its bound', () => {
    const m = new LruMap<string, number[]>(10, (v) => v.length);
    m.set('a', [1, 2, 3, 4]);
    m.set('b', [1, 2, 3, 4]);
    expect(m.get('a')).toEqual([1, 2, 3, 4]); // a is now the most recent
    m.set('c', [1, 2, 3]); // 11 > 10: b goes
    expect([m.has('a'), m.has('b'), m.has('c')]).toEqual([true, false, true]);
    m.set('huge', Array.from({ length: 50 }, (_, i) => i)); // heavier than the bound alone: kept, the rest goes
    expect([m.size, m.has('huge')]).toEqual([1, true]);
    m.delete('huge');
    expect(m.size).toBe(0);
  });
});
