import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { generatedDocs, readDoc } from "../../../scripts/docs.js";

describe("generated docs", () => {
  for (const [path, text] of generatedDocs()) {
    it(`${path} is what npm run docs generates (not stale)`, () => {
      assert.equal(readDoc(path), text, `${path} is stale: run npm run docs`);
    });
  }
  it("document every worker setting and every event type", () => {
    const docs = generatedDocs();
    assert.match(docs.get("docs/configuration.md") ?? "", /`--nats` \| `VMQ_NATS_URL`/);
    assert.match(docs.get("docs/events.md") ?? "", /### `vm.state-observed` \(v1\)/);
  });
});
