// What the configuration tests share: the message of the ConfigError a call throws (the test fails when it
// throws anything else, or nothing).
import { expect } from 'vitest';
import { ConfigError } from '../../core/config.ts';

export function errorOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error('expected a ConfigError');
}
