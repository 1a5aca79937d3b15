/**
 * The example spec `gen-reuseport init` writes: plain JSON (no comments, so it is a valid spec
 * as written) with a `$schema` key that lets editors complete and document every field.
 */

/** `schemaRef` is where the spec's JSON Schema is, as seen from the written file. */
export function initSpecText(schemaRef: string): string {
  const spec = {
    $schema: schemaRef,
    name: "edge-echo",
    version: "0.1.0",
    workers: "auto",
    drainTimeoutMs: 10000,
    listeners: [
      {
        name: "api",
        protocol: "tcp",
        address: "127.0.0.1",
        port: 8080,
        handler: "http",
        backlog: 511,
        http: { body: "OK\n", contentType: "text/plain; charset=utf-8" },
      },
      { name: "echo", protocol: "udp", address: "::1", port: 8081, handler: "echo" },
    ],
  };
  return `${JSON.stringify(spec, null, 2)}\n`;
}
