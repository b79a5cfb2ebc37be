// What the scripts share: one JSON line per step, checks that throw, and the expected SDK errors.
import { createHash } from 'node:crypto';

export const results = {};

export function step(name, value) {
  results[name] = value;
  console.log(JSON.stringify({ step: name, value }));
}

export function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}

export async function expectError(promise, ErrorClass, status) {
  try {
    await promise;
  } catch (error) {
    check(error instanceof ErrorClass, `expected ${ErrorClass.name}, got ${error?.constructor?.name}: ${error}`);
    check(error.status === status, `expected status ${status}, got ${error.status}`);
    check(typeof error.error?.message === 'string', 'the error body carries error.message');
    return error;
  }
  throw new Error(`expected ${ErrorClass.name}, but the call succeeded`);
}

export const sha256 = (bytes) => createHash('sha256').update(bytes).digest('hex');

// The last line a script prints: the test compares its steps with the ones it expects.
export function done(sdk) {
  console.log(JSON.stringify({ ok: true, sdk, steps: Object.keys(results) }));
}
