// Timing helpers of the linear-time tests.

/** The best (lowest) cost of a short and of a long input, measured in turns (short, long, short, …) so that a
 * burst of load on a busy machine falls on both. `cost` returns nanoseconds. */
export function bestAlternating<T>(cost: (input: T) => number, small: T, large: T, rounds = 4): { small: number; large: number } {
  let bestSmall = Infinity;
  let bestLarge = Infinity;
  for (let i = 0; i < rounds; i++) {
    bestSmall = Math.min(bestSmall, cost(small));
    bestLarge = Math.min(bestLarge, cost(large));
  }
  return { small: bestSmall, large: bestLarge };
}
