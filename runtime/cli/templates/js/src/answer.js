// The provider's logic, pure (no `tamma:provider` imports), so `npm test` runs it
// on the host with node.

/** The answer to `prompt`. @param {string} prefix @param {string} prompt */
export function reply(prefix, prompt) {
  return `${prefix}${prompt}`;
}

/**
 * A toy embedding: letter counts folded into `dimensions` buckets, scaled to
 * length 1. Replace it with a call to a real embedding model.
 * @param {string} text @param {number} dimensions
 */
export function embedText(text, dimensions) {
  const v = new Array(dimensions).fill(0);
  for (const ch of text.toLowerCase()) v[ch.codePointAt(0) % dimensions] += 1;
  const norm = Math.sqrt(v.reduce((s, x) => s + x * x, 0));
  return norm === 0 ? v : v.map((x) => x / norm);
}
