// Fake zfs / zonecfg / zoneadm / zlogin / mkisofs for tests without illumos. Each tool is a tiny
// executable in ./bin that calls main(<tool>). State lives in $FAKE_ILLUMOS_STATE:
//   datasets/<name, "/" as "%2F">   one file per dataset or snapshot
//   zones/<zone>.json               {name, state, brand, zonepath, nets, devices, fs, attrs}
//   faults.json                     [{tool, sub, match?, exitCode?, stderr?, sleepMs?, times?}]
//   calls.log                       one JSON argv line per invocation
// Errors mimic the real tools' messages closely enough for the backend's parsing.
/* global AbortSignal */
import {
  appendFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { dirname, join } from "node:path";

const stateDir = process.env.FAKE_ILLUMOS_STATE;

const fail = (msg, code = 1) => {
  process.stderr.write(`${msg}\n`);
  process.exit(code);
};

const dsFile = (name) => join(stateDir, "datasets", name.replaceAll("/", "%2F"));
const dsExists = (name) => existsSync(dsFile(name));
const allDatasets = () =>
  readdirSync(join(stateDir, "datasets")).map((f) => f.replaceAll("%2F", "/"));
const zoneFile = (z) => join(stateDir, "zones", `${z}.json`);
const readZone = (z) =>
  existsSync(zoneFile(z)) ? JSON.parse(readFileSync(zoneFile(z), "utf8")) : undefined;
// State files are replaced by rename, never rewritten in place: tools run concurrently and the
// test reads them while they do, so a reader must see the old or the new file, never half of one.
let tmpCount = 0;
const writeAtomic = (file, text) => {
  const tmp = join(stateDir, `.tmp-${process.pid}-${tmpCount++}`);
  writeFileSync(tmp, text);
  renameSync(tmp, file);
};
const writeZone = (zone) => writeAtomic(zoneFile(zone.name), JSON.stringify(zone, null, 1));

function subcommand(tool, args) {
  switch (tool) {
    case "zfs":
      return args[0];
    case "zoneadm":
      return args[2];
    case "zonecfg":
      return args[2] === "-f" ? "configure" : args[2];
    case "zlogin":
      return args[1];
    default:
      return "build";
  }
}

/** Applies a matching injected fault (may exit). */
async function injectFaults(tool, args) {
  const file = join(stateDir, "faults.json");
  if (!existsSync(file)) return;
  const faults = JSON.parse(readFileSync(file, "utf8"));
  const sub = subcommand(tool, args);
  const f = faults.find(
    (x) =>
      x.tool === tool &&
      (x.sub === undefined || x.sub === sub) &&
      (x.match === undefined || args.join(" ").includes(x.match)) &&
      (x.times === undefined || x.times > 0),
  );
  if (!f) return;
  if (f.times !== undefined) {
    f.times -= 1;
    writeAtomic(file, JSON.stringify(faults));
  }
  if (f.sleepMs) await new Promise((r) => setTimeout(r, f.sleepMs));
  if (f.exitCode !== undefined && f.exitCode !== 0)
    fail(f.stderr ?? `${tool}: injected failure`, f.exitCode);
}

/** Tells the fake propolis-server at the zone's address that its "process" started or died. */
async function signalPropolis(zone, action) {
  const addr = zone.attrs?.["vmq-propolis-addr"];
  if (!addr) return;
  try {
    await fetch(`http://${addr}/__fake/process`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ action }),
      signal: AbortSignal.timeout(2000),
    });
  } catch {
    // nobody listens there: the zone boots, its server is simply not reachable
  }
}

function zfs(args) {
  const [sub, ...rest] = args;
  switch (sub) {
    case "list": {
      const name = rest.at(-1);
      if (!dsExists(name)) fail(`cannot open '${name}': dataset does not exist`);
      process.stdout.write(`${name}\n`);
      return;
    }
    case "clone": {
      const [snap, target] = rest;
      if (!snap?.includes("@") || !dsExists(snap))
        fail(`cannot open '${snap}': dataset does not exist`);
      if (!dsExists(dirname(target))) fail(`cannot create '${target}': parent does not exist`);
      if (dsExists(target)) fail(`cannot create '${target}': dataset already exists`);
      writeFileSync(dsFile(target), JSON.stringify({ origin: snap }));
      return;
    }
    case "destroy": {
      const name = rest.at(-1);
      if (!dsExists(name)) fail(`cannot open '${name}': dataset does not exist`);
      const recursive = rest.includes("-r");
      const children = allDatasets().filter(
        (d) => d.startsWith(`${name}/`) || d.startsWith(`${name}@`),
      );
      if (children.length > 0 && !recursive)
        fail(`cannot destroy '${name}': filesystem has children`);
      for (const d of [name, ...children]) rmSync(dsFile(d));
      return;
    }
    default:
      fail(`unrecognized command '${sub}'`, 2);
  }
}

function parseZonecfg(text, name) {
  const zone = {
    name,
    state: "configured",
    brand: "",
    zonepath: "",
    nets: [],
    devices: [],
    fs: [],
    attrs: {},
  };
  let scope;
  for (const line of text
    .split("\n")
    .map((l) => l.trim())
    .filter(Boolean)) {
    const [cmd, arg = ""] = line.split(/\s+/, 2);
    const [key, value] = arg.split("=", 2);
    if (cmd === "add") scope = { kind: arg, props: {} };
    else if (cmd === "end") {
      const p = scope.props;
      if (scope.kind === "net") zone.nets.push(p.physical);
      else if (scope.kind === "device") zone.devices.push(p.match);
      else if (scope.kind === "fs") zone.fs.push(p);
      else if (scope.kind === "attr") zone.attrs[p.name] = p.value;
      scope = undefined;
    } else if (cmd === "set" && scope) scope.props[key] = value;
    else if (cmd === "set") zone[key] = value;
    else if (!["create", "verify", "commit"].includes(cmd) && !(scope && cmd === "add")) {
      fail(`zonecfg: unknown command "${cmd}"`);
    }
  }
  if (!zone.brand || !zone.zonepath) fail(`${name}: brand and zonepath are required`);
  return zone;
}

function zonecfg(args) {
  const [flag, name, sub, arg] = args;
  if (flag !== "-z" || !name) fail("usage: zonecfg -z zone ...", 253);
  const zone = readZone(name);
  if (sub === "-f") {
    if (zone) fail(`${name}: zone already exists`);
    writeZone(parseZonecfg(readFileSync(arg, "utf8"), name));
    return;
  }
  if (sub === "delete") {
    if (!zone) fail(`${name}: No such zone configured`);
    if (zone.state !== "configured")
      fail(`Zone ${name} is in the ${zone.state} state; uninstall it first`);
    rmSync(zoneFile(name));
    return;
  }
  fail(`zonecfg: unknown subcommand ${sub}`, 253);
}

async function zoneadm(args) {
  const [flag, name, sub] = args;
  if (flag !== "-z" || !name) fail("usage: zoneadm -z zone ...", 253);
  const zone = readZone(name);
  if (!zone) fail(`zoneadm: zone '${name}': No such zone configured`);
  const need = (state) => {
    if (zone.state !== state)
      fail(`zoneadm: zone '${name}': must be ${state} to ${sub}; it is ${zone.state}`);
  };
  switch (sub) {
    case "list":
      process.stdout.write(
        `${zone.state === "running" ? 7 : "-"}:${name}:${zone.state}:${zone.zonepath}:uuid-${name}:${zone.brand}:excl\n`,
      );
      return;
    case "install":
      need("configured");
      zone.state = "installed";
      break;
    case "uninstall":
      need("installed");
      zone.state = "configured";
      break;
    case "boot":
      if (zone.state !== "ready") need("installed");
      zone.state = "running";
      writeZone(zone);
      await signalPropolis(zone, "boot");
      return;
    case "halt":
      if (zone.state !== "ready") need("running");
      zone.state = "installed";
      writeZone(zone);
      await signalPropolis(zone, "halt");
      return;
    default:
      fail(`zoneadm: unknown subcommand ${sub}`, 253);
  }
  writeZone(zone);
}

function zlogin(args) {
  const [name, ...cmd] = args;
  const zone = readZone(name);
  if (!zone) fail(`zlogin: zone '${name}' unknown`);
  if (zone.state !== "running")
    fail(`zlogin: login allowed only to running zones (${name} is '${zone.state}').`);
  if (cmd.join(" ") === "ipadm show-addr -p -o ADDR") {
    process.stdout.write(
      zone.addrs ?? "127.0.0.1/8\n10.0.0.5/24\n::1/128\nfe80::8:20ff:fe00:1/10\n",
    );
    return;
  }
  fail(`zlogin: fake cannot run ${cmd.join(" ")}`);
}

function mkisofs(args) {
  const out = args[args.indexOf("-output") + 1];
  const volid = args[args.indexOf("-volid") + 1];
  if (!out || !existsSync(dirname(out))) fail(`mkisofs: cannot open output ${out}`);
  const inputs = args.filter(
    (a, i) => !a.startsWith("-") && !["-output", "-volid"].includes(args[i - 1]),
  );
  const files = Object.fromEntries(
    inputs.map((f) => [f.split("/").at(-1), readFileSync(f, "utf8")]),
  );
  writeFileSync(out, JSON.stringify({ volid, files }));
}

export async function main(tool) {
  if (!stateDir) fail(`${tool}: FAKE_ILLUMOS_STATE is not set`, 99);
  const args = process.argv.slice(2);
  mkdirSync(join(stateDir, "datasets"), { recursive: true });
  mkdirSync(join(stateDir, "zones"), { recursive: true });
  appendFileSync(join(stateDir, "calls.log"), `${JSON.stringify([tool, ...args])}\n`);
  await injectFaults(tool, args);
  switch (tool) {
    case "zfs":
      return zfs(args);
    case "zonecfg":
      return zonecfg(args);
    case "zoneadm":
      return zoneadm(args);
    case "zlogin":
      return zlogin(args);
    case "mkisofs":
      return mkisofs(args);
    default:
      fail(`unknown fake tool ${tool}`, 99);
  }
}
