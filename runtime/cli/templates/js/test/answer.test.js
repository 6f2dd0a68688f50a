import assert from 'node:assert/strict';
import { test } from 'node:test';
import { embedText, reply } from '../src/answer.js';

test('replies with the prompt after the prefix', () => {
  assert.equal(reply('> ', 'hello'), '> hello');
});

test('an embedding has the asked dimensions and length 1', () => {
  const v = embedText('hello', 8);
  assert.equal(v.length, 8);
  assert.ok(Math.abs(Math.hypot(...v) - 1) < 1e-9);
});
