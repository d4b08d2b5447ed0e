// The README's configuration table is the documentation of config.ts.
import { readFileSync } from "node:fs";
import { expect, it } from "vitest";
import { SETTINGS } from "../../src/config.js";

const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");

it("documents every setting with its flag and default, and no others", () => {
  const rows = readme.split("\n").filter((line) => /^\| `[A-Z_]+` \|/.test(line));
  const documented = rows.map((row) => row.split("|")[1]!.trim().replaceAll("`", ""));
  expect(documented).toEqual(Object.values(SETTINGS).map((s) => s.env));
  for (const setting of Object.values(SETTINGS)) {
    const row = rows.find((r) => r.startsWith(`| \`${setting.env}\``))!;
    expect(row).toContain(`\`--${setting.flag}\``);
    const shown = setting.env === "CAIRN_DATA_DIR" ? "./.cairn/data" : setting.default;
    expect(row).toContain(shown === undefined ? "unset" : `\`${shown}\``);
  }
});
