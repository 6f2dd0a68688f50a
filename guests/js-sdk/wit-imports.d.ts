// The world's imports as componentize-js exposes them to JavaScript.
declare module 'tamma:provider/host@0.2.0' {
  export function log(
    level: import('./tamma').LogLevel,
    message: string,
    fields: [string, string][],
  ): void;
}
