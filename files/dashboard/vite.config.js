import { resolve } from 'node:path';
import { defineConfig } from 'vite';

// Static files for Amplify Hosting: relative asset URLs, no source maps, output in the repository's
// gitignored .build/dashboard unless DASHBOARD_OUT_DIR names another folder. config.json is not part of
// the build: the amplify role writes it into the deployed bundle.
export default defineConfig({
  base: './',
  publicDir: false,
  build: {
    outDir: process.env.DASHBOARD_OUT_DIR || resolve(import.meta.dirname, '../../.build/dashboard'),
    emptyOutDir: true,
    sourcemap: false,
  },
});
