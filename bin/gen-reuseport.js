#!/usr/bin/env node
// The installed command. The CLI is compiled into dist/ when the package is packed (prepack),
// so an installed package has it; a checkout has it after `npm run build` (the npm scripts that
// need it, such as `npm run demo`, build first).
try {
  await import("../dist/cli/main.js");
} catch (error) {
  const missing =
    error?.code === "ERR_MODULE_NOT_FOUND" && String(error.message).includes("dist/cli/main.js");
  if (!missing) throw error;
  process.stderr.write(
    "gen-reuseport: dist/ is missing (this is a checkout that was not built); run npm run build\n",
  );
  process.exitCode = 70;
}
