#!/usr/bin/env node
// The installed command; the CLI itself is compiled into dist/ by `npm install` (prepare).
import "../dist/cli/main.js";
