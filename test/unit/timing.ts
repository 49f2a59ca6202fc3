// Timing helpers of the linear-time tests.

/** Nanoseconds of this process's CPU time (user + system) that `fn` took: unlike the wall clock, it does not count
 * the time the process waited for a CPU, which on a busy machine (the unit tests run at nice 10 beside the integration
 * tests and the live cloud) made a linear cost look 135× for 16× the input in one full run. */
export function cpuNs(fn: () => void): number {
  const before = process.cpuUsage();
  fn();
  const d = process.cpuUsage(before);
  return (d.user + d.system) * 1000;
}

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
