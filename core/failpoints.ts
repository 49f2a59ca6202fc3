// Failpoints for crash tests: STACKWATCH_FAILPOINTS="processor.before-commit=2" makes the process kill
// itself with SIGKILL the 2nd time it reaches that point, exactly as an OOM kill or a power cut would.
// Unset (always, in production) it costs one map lookup.
const armed = new Map<string, number>();
for (const spec of (process.env.STACKWATCH_FAILPOINTS ?? '').split(',').filter(Boolean)) {
  const [name, hits] = spec.split('=');
  armed.set(name.trim(), Number(hits ?? 1));
}

export function failpoint(name: string): void {
  const left = armed.get(name);
  if (left === undefined) return;
  if (left <= 1) process.kill(process.pid, 'SIGKILL');
  armed.set(name, left - 1);
}
