// The web UI's page files are plain HTML/CSS/JS: the build copies them beside the compiled
// server (dist/ui/static), so `npm pack` ships them and users need no build step of their own.
import { cpSync, rmSync } from "node:fs";
import { join } from "node:path";

const root = join(import.meta.dirname, "..");
const to = join(root, "dist", "ui", "static");
rmSync(to, { recursive: true, force: true });
cpSync(join(root, "src", "ui", "static"), to, { recursive: true });
