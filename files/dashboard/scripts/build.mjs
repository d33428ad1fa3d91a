// Build the site into the folder named on the command line, atomically: vite writes a temporary
// sibling folder that is then renamed into place, so two builds of the same sources at the same
// time (two playbook runs) never leave a half-written folder. An existing folder is kept: the
// amplify role names it after the hash of the sources, so it already holds this build.
import { existsSync, renameSync, rmSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'vite';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const target = process.argv[2] ? resolve(process.argv[2]) : null;
if (!target) {
  console.error('usage: node scripts/build.mjs <output folder>');
  process.exit(2);
}
const temporary = `${target}.tmp-${process.pid}`;
await build({ root, configFile: resolve(root, 'vite.config.js'), logLevel: 'warn', build: { outDir: temporary } });
try {
  renameSync(temporary, target);
} catch (error) {
  rmSync(temporary, { recursive: true, force: true });
  if (!existsSync(resolve(target, 'index.html'))) throw error;
}
console.log(target);
