// Fake zfs / zonecfg / zoneadm / zlogin / dladm / mkisofs for tests without illumos. Each tool is
// a tiny executable in ./bin that calls main(<tool>). State lives in $FAKE_ILLUMOS_STATE:
//   datasets/<name, "/" as "%2F">   one file per dataset or snapshot: {origin?, volsize?}
//   zones/<zone>.json               {name, state, brand, zonepath, nets, devices, fs, attrs}
//   links/<link>.json               physical links and etherstubs: {}
//   vnics/<vnic>.json               {link, mac}
//   neighbours/<zone>.json          {arp, ndp}: what `arp -an` / `ndp -an` print in the zone
//   faults.json                     [{tool, sub, match?, exitCode?, stderr?, sleepMs?, times?}]
//   calls.log                       one JSON argv line per invocation
// Errors mimic the real tools' messages closely enough for the backend's parsing.
//
// The zone brand is modelled too (docs/propolis.md): `zoneadm boot` refuses a zone whose
// attributes are missing or wrong ($FAKE_BRAND_ADDR_ATTR, default vmq-propolis-addr, must be an
// ip:port whose ip is the allowed-address of one of the zone's nets; $FAKE_BRAND_BOOTROM_ATTR,
// default vmq-bootrom, must name a file through one of the zone's lofs mounts), or whose nets
// name a VNIC that does not exist; then it asks $FAKE_PROPOLIS_LAUNCHER to run propolis-server
// on exactly that address, as the real brand's boot would.
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
const readDs = (name) => JSON.parse(readFileSync(dsFile(name), "utf8"));
const vnicFile = (n) => join(stateDir, "vnics", `${n}.json`);
const linkExists = (n) =>
  existsSync(join(stateDir, "links", `${n}.json`)) || existsSync(vnicFile(n));
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
    case "dladm":
      return args[0];
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

const ADDR_ATTR = process.env.FAKE_BRAND_ADDR_ATTR || "vmq-propolis-addr";
const BOOTROM_ATTR = process.env.FAKE_BRAND_BOOTROM_ATTR || "vmq-bootrom";

/**
 * What the brand's boot needs before it can run `propolis-server run <bootrom> <ip:port>` in
 * the zone: every net's VNIC, the address attribute on one of the zone's own addresses (an
 * exclusive-IP zone has no other), and the bootrom reachable through a mount. Exits on a miss.
 */
function brandChecks(zone) {
  const name = zone.name;
  for (const n of zone.nets ?? []) {
    if (!existsSync(vnicFile(n.physical)))
      fail(`zoneadm: zone '${name}': net '${n.physical}': link not found`);
  }
  const addr = zone.attrs?.[ADDR_ATTR];
  if (!addr) fail(`zoneadm: zone '${name}': brand: attribute ${ADDR_ATTR} is not set`);
  const m = /^(\d{1,3}(?:\.\d{1,3}){3}):(\d{1,5})$/.exec(addr);
  if (!m) fail(`zoneadm: zone '${name}': brand: ${ADDR_ATTR} ${addr} is not ip:port`);
  const own = (zone.nets ?? []).map((n) => n.allowedAddress?.split("/")[0]).filter(Boolean);
  if (!own.includes(m[1]))
    fail(
      `zoneadm: zone '${name}': brand: ${ADDR_ATTR} ${addr} is not an address of the zone (has ${own.join(", ") || "none"})`,
    );
  const rom = zone.attrs?.[BOOTROM_ATTR];
  if (!rom) fail(`zoneadm: zone '${name}': brand: attribute ${BOOTROM_ATTR} is not set`);
  const mount = (zone.fs ?? []).find((f) => rom.startsWith(`${f.dir}/`));
  const global = mount ? join(mount.special, rom.slice(mount.dir.length + 1)) : undefined;
  if (!global || !existsSync(global))
    fail(`zoneadm: zone '${name}': brand: bootrom ${rom} does not exist in the zone`);
  return { addr, host: m[1], port: Number(m[2]), bootrom: global, vmId: zone.attrs["vmq-vm-id"] };
}

/** Starts or stops "propolis-server" through the test's launcher (none: nothing listens). */
async function launcher(action, body) {
  const url = process.env.FAKE_PROPOLIS_LAUNCHER;
  if (!url) return { ok: true };
  try {
    const r = await fetch(`${url}/${action}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(30_000),
    });
    return r.ok ? { ok: true } : { ok: false, error: await r.text() };
  } catch (e) {
    return { ok: false, error: String(e) };
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
      const { volsize } = readDs(snap);
      writeFileSync(dsFile(target), JSON.stringify({ origin: snap, volsize }));
      return;
    }
    case "get": {
      // get -Hp -o value volsize <name>
      const [prop, name] = rest.slice(-2);
      if (!dsExists(name)) fail(`cannot open '${name}': dataset does not exist`);
      if (prop !== "volsize") fail(`bad property list: invalid property '${prop}'`, 2);
      process.stdout.write(`${readDs(name).volsize ?? "-"}\n`);
      return;
    }
    case "set": {
      const [kv, name] = rest;
      const [prop, value] = kv.split("=");
      if (!dsExists(name)) fail(`cannot open '${name}': dataset does not exist`);
      const ds = readDs(name);
      if (prop !== "volsize" || ds.volsize === undefined || name.includes("@"))
        fail(
          `cannot set property for '${name}': '${prop}' does not apply to datasets of this type`,
        );
      if (!/^\d+$/.test(value) || Number(value) % 8192 !== 0)
        fail(
          `cannot set property for '${name}': 'volsize' must be a multiple of volume block size (8K)`,
        );
      writeAtomic(dsFile(name), JSON.stringify({ ...ds, volsize: Number(value) }));
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
    if (cmd === "add" && scope) scope.props[arg.split(/\s+/)[0]] = line.split(/\s+/).slice(2);
    else if (cmd === "add") scope = { kind: arg, props: {} };
    else if (cmd === "end") {
      const p = scope.props;
      if (scope.kind === "net")
        zone.nets.push({
          physical: p.physical,
          ...(p["allowed-address"] ? { allowedAddress: p["allowed-address"] } : {}),
          ...(p.defrouter ? { defrouter: p.defrouter } : {}),
        });
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
    case "boot": {
      if (zone.state !== "ready") need("installed");
      const server = brandChecks(zone);
      const first = !zone.everBooted;
      zone.state = "running";
      zone.everBooted = true;
      writeZone(zone);
      const launched = await launcher("boot", { ...server, zone: name, first });
      if (!launched.ok) {
        zone.state = "installed";
        writeZone(zone);
        fail(`zoneadm: zone '${name}': brand boot failed: ${launched.error}`);
      }
      return;
    }
    case "halt":
      if (zone.state !== "ready") need("running");
      zone.state = "installed";
      writeZone(zone);
      await launcher("halt", { zone: name, addr: zone.attrs?.[ADDR_ATTR] });
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
  const table = { "arp -an": "arp", "ndp -an": "ndp" }[cmd.join(" ")];
  if (table) {
    const f = join(stateDir, "neighbours", `${name}.json`);
    const n = existsSync(f) ? JSON.parse(readFileSync(f, "utf8")) : {};
    process.stdout.write(n[table] ?? "");
    return;
  }
  fail(`zlogin: fake cannot run ${cmd.join(" ")}`);
}

const LINK_NAME = /^[A-Za-z][A-Za-z0-9_]{0,29}[0-9]$/;

function dladm(args) {
  const [sub, ...rest] = args;
  switch (sub) {
    case "create-vnic": {
      const link = rest[rest.indexOf("-l") + 1];
      const name = rest.at(-1);
      if (!LINK_NAME.test(name)) fail(`dladm: invalid link name '${name}'`);
      if (!link || !linkExists(link)) fail(`dladm: invalid link '${link}': object not found`);
      if (existsSync(vnicFile(name))) fail(`dladm: vnic creation failed: object already exists`);
      const mac = `2:8:20:${[0, 0, 0].map(() => Math.floor(Math.random() * 256).toString(16)).join(":")}`;
      writeAtomic(vnicFile(name), JSON.stringify({ link, mac }));
      return;
    }
    case "delete-vnic": {
      const name = rest.at(-1);
      if (!existsSync(vnicFile(name))) fail(`dladm: invalid link name '${name}': object not found`);
      const users = readdirSync(join(stateDir, "zones"))
        .map((f) => JSON.parse(readFileSync(join(stateDir, "zones", f), "utf8")))
        .filter((z) => z.state === "running" && z.nets.some((n) => n.physical === name));
      if (users.length > 0) fail(`dladm: vnic deletion failed: link busy`);
      rmSync(vnicFile(name));
      return;
    }
    case "show-vnic": {
      const name = rest.at(-1);
      if (!existsSync(vnicFile(name))) fail(`dladm: invalid vnic name '${name}': object not found`);
      const { mac } = JSON.parse(readFileSync(vnicFile(name), "utf8"));
      // -p output escapes the colons.
      process.stdout.write(`${mac.replaceAll(":", "\\:")}\n`);
      return;
    }
    default:
      fail(`dladm: unknown subcommand '${sub}'`, 2);
  }
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
  mkdirSync(join(stateDir, "vnics"), { recursive: true });
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
    case "dladm":
      return dladm(args);
    case "mkisofs":
      return mkisofs(args);
    default:
      fail(`unknown fake tool ${tool}`, 99);
  }
}
