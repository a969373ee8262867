// Type-aware lint plus the dependency direction of the layout (README "Architecture").
import js from "@eslint/js";
import tseslint from "typescript-eslint";
import importX from "eslint-plugin-import-x";
import { createTypeScriptImportResolver } from "eslint-import-resolver-typescript";

const io = ["node:*", "@nats-io/*", "execa", "pino", "pino-*", "ws", "prom-client", "commander"];
const noIo = (extra = []) => ({
  "no-restricted-imports": [
    "error",
    {
      patterns: [{ group: [...io, ...extra], message: "This folder stays pure: no I/O imports." }],
    },
  ],
});

// zones: files in `target` may not import from `from` (except the listed sub-folders)
const zone = (target, allowed) => ({
  target: `./src/${target}`,
  from: "./src",
  except: [`./${target}`, ...allowed.map((a) => `./${a}`)],
  message: `src/${target} may import only ${allowed.join(", ") || "itself"} (see README architecture table).`,
});

export default tseslint.config(
  {
    ignores: [
      "dist/**",
      "node_modules/**",
      "schemas/**",
      "coverage/**",
      "test/.cache/**",
      "bench-results/**",
      ".stryker-tmp/**",
      "reports/**",
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    plugins: { "import-x": importX },
    // Without a resolver that maps "./x.js" to x.ts, import-x cannot see where an import goes,
    // and the boundary and cycle rules below would pass everything.
    settings: {
      "import-x/resolver-next": [createTypeScriptImportResolver({ project: "./tsconfig.json" })],
    },
    rules: {
      "@typescript-eslint/no-floating-promises": [
        "error",
        {
          allowForKnownSafeCalls: [
            { from: "package", package: "node:test", name: ["it", "describe", "test", "suite"] },
          ],
        },
      ],
      "@typescript-eslint/no-misused-promises": "error",
      "@typescript-eslint/consistent-type-imports": "error",
      "@typescript-eslint/no-unused-vars": [
        "error",
        { argsIgnorePattern: "^_", varsIgnorePattern: "^_" },
      ],
      "import-x/no-cycle": "error",
      "import-x/no-restricted-paths": [
        "error",
        {
          zones: [
            zone("contracts", []),
            zone("domain", ["contracts"]),
            zone("lib", ["contracts"]),
            zone("observability", ["lib", "contracts"]),
            zone("config", ["contracts", "lib", "hypervisor"]),
            zone("hypervisor", ["domain", "contracts", "lib", "observability"]),
            zone("event-store", ["domain", "contracts", "lib"]),
            // The images bucket is read the same way by the SDK and the worker (one resolver).
            zone("client", ["domain", "contracts", "lib", "event-store/image-bucket.ts"]),
            zone("worker", [
              "domain",
              "contracts",
              "lib",
              "observability",
              "hypervisor",
              "event-store",
              "config",
            ]),
            // The web UI's server: the SDK, as any scheduler would use it.
            zone("ui", ["client", "contracts", "lib", "observability"]),
            zone("cli", [
              "ui",
              "worker",
              "client",
              "event-store",
              "domain",
              "config",
              "observability",
              "contracts",
              "lib",
            ]),
            { target: "./src", from: "./test", message: "src never imports test code." },
          ],
        },
      ],
    },
  },
  { files: ["src/contracts/**/*.ts"], rules: noIo() },
  { files: ["src/domain/**/*.ts"], rules: noIo(["zod"]) },
  {
    files: ["**/*.js", "**/*.mjs"],
    ...tseslint.configs.disableTypeChecked,
    languageOptions: {
      ...tseslint.configs.disableTypeChecked.languageOptions,
      globals: {
        process: "readonly",
        console: "readonly",
        URL: "readonly",
        setTimeout: "readonly",
        fetch: "readonly",
      },
    },
  },
  {
    // The web UI's page: plain browser scripts, no build step.
    files: ["src/ui/static/**/*.js"],
    languageOptions: {
      sourceType: "script",
      globals: Object.fromEntries(
        [
          "window",
          "document",
          "location",
          "history",
          "sessionStorage",
          "URLSearchParams",
          "EventSource",
          "WebSocket",
          "TextEncoder",
          "FormData",
          "MutationObserver",
          "addEventListener",
          "confirm",
          "setInterval",
          "clearInterval",
        ].map((g) => [g, "readonly"]),
      ),
    },
  },
);
