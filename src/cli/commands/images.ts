import { stat } from "node:fs/promises";
import type { Command } from "@commander-js/extra-typings";
import { ImageStore } from "../../client/images/image-store.js";
import { imageUsers, pruneMoveImages } from "../../client/images/image-use.js";
import type { ImageInfo } from "../../contracts/images.js";
import { addConnectionFlags, printJson, table, withClient } from "../connection.js";
import { CliError } from "../errors.js";
import { age, examples, formatOf, isMachine, machine, outputOption } from "../output.js";

const MiB = 1024 * 1024;

/** vmq image push|ls|inspect|rm|tag|prune: base images in the `<prefix>-images` object store. */
export function registerImages(program: Command): void {
  const image = program
    .command("image")
    .description(
      "Base images in the NATS object store (<prefix>-images): push, ls, inspect, rm, tag, prune",
    )
    .addHelpText(
      "after",
      examples(
        "vmq image push ./base.qcow2 --name base --tag v1",
        "vmq image ls",
        "vmq prepare web-1 --image-ref base:v1 --vcpus 1 --memory-mb 512",
      ),
    );

  addConnectionFlags(
    image
      .command("push")
      .description("Stream a disk image file into the store as name:tag (SHA-256 recorded)")
      .argument("<file>", "the image file (qcow2, raw, ...)")
      .requiredOption("--name <name>", "image name (a-z 0-9 . _ -)")
      .option("--tag <tag>", "tag to point at it", "latest")
      .option("--json", "print the stored image as JSON")
      .addHelpText(
        "after",
        examples(
          "vmq image push ./base.qcow2 --name base --tag v1",
          "vmq image push ./base.qcow2 --name base --json",
        ),
      ),
  ).action(async (file, flags) => {
    // A file that cannot be read is the caller's mistake, said before anything is sent.
    const s = await stat(file).catch((e: unknown) => {
      throw new CliError(
        "config::unreadable-file",
        `cannot read the image file ${file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`,
      );
    });
    if (!s.isFile()) throw new CliError("config::unreadable-file", `${file} is not a regular file`);
    await withClient(flags, async (c) => {
      const store = new ImageStore(c.nc, { prefix: c.names.prefix });
      // A progress line on a terminal only: pipes and logs get the result alone.
      const tty = process.stderr.isTTY;
      let last = 0;
      const info = await store.push(file, {
        name: flags.name,
        tag: flags.tag,
        onProgress: (sent, total) => {
          if (!tty || (Date.now() - last < 200 && sent !== total)) return;
          last = Date.now();
          const pct = total ? ` ${Math.floor((100 * sent) / total)}%` : "";
          process.stderr.write(`\rpushing ${(sent / MiB).toFixed(1)} MiB${pct}   `);
        },
      });
      if (tty) process.stderr.write("\n");
      if (flags.json) printJson(info);
      else process.stdout.write(`${info.name}:${flags.tag} ${info.digest} ${info.size} bytes\n`);
    });
  });

  addConnectionFlags(
    image
      .command("ls")
      .description("List the stored images with their tags")
      .addOption(outputOption())
      .option("--json", "same as -o json: a JSON array")
      .addHelpText(
        "after",
        examples("vmq image ls", "vmq image ls -o wide", "vmq image ls -o json"),
      ),
  ).action(async (flags) => {
    const format = formatOf(flags);
    await withClient(flags, async (c) => {
      const list = await new ImageStore(c.nc, { prefix: c.names.prefix }).list();
      if (isMachine(format)) return void process.stdout.write(machine(format, list));
      const wide = format === "wide";
      // Wide also says who still needs each image (a scan of the view): what rm would refuse.
      const users = wide ? await imageUsers(c.client) : undefined;
      const usedBy = (i: ImageInfo) => [(users?.get(i.digest) ?? []).join(",") || "-"];
      process.stdout.write(
        table(
          ["NAME", "TAGS", "DIGEST", "SIZE", wide ? "PUSHED" : "AGE", ...(wide ? ["USED BY"] : [])],
          list.map((i) => [...row(i, wide), ...(wide ? usedBy(i) : [])]),
        ),
      );
    });
  });

  addConnectionFlags(
    image
      .command("inspect")
      .description("One image by name:tag or name@sha256:<hex>, as JSON (or -o yaml)")
      .argument("<ref>", "name:tag or name@sha256:<hex>")
      .addOption(outputOption(["json", "yaml"]))
      .addHelpText(
        "after",
        examples("vmq image inspect base:v1", "vmq image inspect base:v1 -o yaml"),
      ),
  ).action(async (ref, flags) => {
    await withClient(flags, async (c) => {
      const info = await new ImageStore(c.nc, { prefix: c.names.prefix }).inspect(ref);
      if (flags.output === "yaml") process.stdout.write(machine("yaml", info));
      else printJson(info);
    });
  });

  addConnectionFlags(
    image
      .command("rm")
      .description(
        "Remove a tag (and its image once untagged), or an image by digest with its tags",
      )
      .argument("<ref>", "name:tag or name@sha256:<hex>")
      .option("--force", "remove it even though VMs not destroyed were prepared from it")
      .addHelpText(
        "after",
        examples("vmq image rm base:v1", "vmq image rm base@sha256:<64 hex digits>"),
      ),
  ).action(async (ref, flags) => {
    await withClient(flags, async (c) => {
      // An image a VM runs from is what a move or an evacuation of that VM needs again.
      const users = flags.force ? undefined : await imageUsers(c.client);
      const store = new ImageStore(c.nc, { prefix: c.names.prefix });
      const removed = await store.remove(
        ref,
        users ? { usedBy: (digest) => Promise.resolve(users.get(digest) ?? []) } : {},
      );
      for (const r of removed) process.stdout.write(`removed ${r}\n`);
    });
  });

  addConnectionFlags(
    image
      .command("prune")
      .description(
        "Remove the disks moves exported (move-<vm>) that no VM runs from any more (destroyed, or moved again)",
      )
      .option("--dry-run", "only list what would be removed")
      .option("--json", "print { removed, kept } as JSON")
      .addHelpText("after", examples("vmq image prune --dry-run", "vmq image prune")),
  ).action(async (flags) => {
    await withClient(flags, async (c) => {
      const r = await pruneMoveImages(c.client, { dryRun: flags.dryRun === true });
      if (flags.json) return printJson(r);
      const verb = flags.dryRun ? "would remove" : "removed";
      for (const i of r.removed) process.stdout.write(`${verb} ${i.name}@${i.digest}\n`);
      process.stdout.write(
        `${r.removed.length} ${verb}, ${r.kept.length} kept (VMs run from them)\n`,
      );
    });
  });

  addConnectionFlags(
    image
      .command("tag")
      .description("Point another tag of the same name at an image")
      .argument("<ref>", "name:tag or name@sha256:<hex>")
      .argument("<tag>", "the new tag")
      .addHelpText(
        "after",
        examples("vmq image tag base:v1 stable", "vmq image tag base@sha256:<hex> v2"),
      ),
  ).action(async (ref, tag, flags) => {
    await withClient(flags, async (c) => {
      const info = await new ImageStore(c.nc, { prefix: c.names.prefix }).tag(ref, tag);
      process.stdout.write(`${info.name}:${tag} ${info.digest}\n`);
    });
  });
}

const row = (i: ImageInfo, wide: boolean): string[] => [
  i.name,
  i.tags.join(",") || "-",
  wide ? i.digest : i.digest.slice(0, 19),
  `${(i.size / MiB).toFixed(1)} MiB`,
  wide ? i.pushedAt : age(i.pushedAt),
];
