#!/usr/bin/env node
// The `berth` command. The program itself is compiled from src/ into dist/ by the
// repository's setup (scripts/setup.sh); this launcher exists before that build, so that
// npm can link the command when it installs the workspace.
try {
  await import('../dist/main.js');
} catch (err) {
  if (err?.code === 'ERR_MODULE_NOT_FOUND' && String(err.message).includes('dist/main.js')) {
    process.stderr.write('berth: the command line is not built yet: run `npm run setup` in the berth checkout\n');
    process.exit(1);
  }
  throw err;
}
