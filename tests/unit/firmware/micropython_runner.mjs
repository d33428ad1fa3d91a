// Runs a Python file on MicroPython's WebAssembly port (npm @micropython/micropython-webassembly-pyscript)
// with firmware/app installed as the package /app, the way the board has it.
// Usage: node micropython_runner.mjs <node_modules dir> <app dir> <script.py>
// The WebAssembly port has no socket or ssl module: empty stand-ins let app/net.py import (the check
// script never opens a network connection).
import fs from "fs";
import path from "path";
import { pathToFileURL } from "url";

const [modulesDir, appDir, script] = process.argv.slice(2);
const entry = path.join(modulesDir, "@micropython", "micropython-webassembly-pyscript", "micropython.mjs");
const { loadMicroPython } = await import(pathToFileURL(entry).href);
const mp = await loadMicroPython({
  heapsize: 4 * 1024 * 1024,
  stdout: (line) => process.stdout.write(line + "\n"),
  stderr: (line) => process.stderr.write(line + "\n"),
});
mp.FS.mkdir("/app");
mp.FS.mkdir("/stubs");
for (const name of fs.readdirSync(appDir).sort()) {
  if (name.endsWith(".py")) mp.FS.writeFile("/app/" + name, fs.readFileSync(path.join(appDir, name)));
}
for (const name of ["socket", "ssl"]) {
  mp.FS.writeFile(`/stubs/${name}.py`, `# stand-in: no ${name} in the WebAssembly port\n`);
}
try {
  mp.runPython('import sys\nsys.path.insert(0, "/")\nsys.path.append("/stubs")\n');
  mp.runPython(fs.readFileSync(script, "utf8"));
} catch (err) {
  process.stderr.write(String(err && err.message ? err.message : err) + "\n");
  process.exit(1);
}
