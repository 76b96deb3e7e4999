// A clean environment for a child `deno` (no CELERIAC_* variables from the test runner) that
// still reaches the npm registry as the runner does: a cold cache downloads packages, through
// the machine's proxy and with its CA certificates (a TLS-inspecting proxy signs with its own).

const KEEP =
  /^(HOME|DENO_DIR|DENO_CERT|DENO_TLS_CA_STORE|NODE_EXTRA_CA_CERTS|SSL_CERT_FILE|SSL_CERT_DIR|NPM_CONFIG_REGISTRY|HTTPS?_PROXY|NO_PROXY|ALL_PROXY)$/i;

/**
 * The runner's network settings (proxy, CA certificates, Deno's cache) plus `extra`.
 *
 * @param extra Variables to set.
 * @returns The environment, for `new Deno.Command(..., { clearEnv: true, env })`.
 */
export function cleanEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = { HOME: "/root", NO_COLOR: "1" };
  for (const [name, value] of Object.entries(Deno.env.toObject())) {
    if (KEEP.test(name)) env[name] = value;
  }
  return { ...env, ...extra };
}
