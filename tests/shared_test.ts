import { assert, assertEquals } from "./assert.ts";
import { missingShared, sharedTest } from "./shared.ts";

Deno.test("sharedTest: a test whose shared file is absent is ignored, the missing path in its name", () => {
  const absent = sharedTest("needs a file", "reference/no-such-file-0b7c.json");
  assertEquals(absent.ignore, true);
  assert(absent.name.startsWith("needs a file [ignored: "), absent.name);
  assert(absent.name.includes("/reference/no-such-file-0b7c.json is absent"), absent.name);
  // A path that exists (absolute URLs resolve as themselves) runs, under its own name.
  const here = new URL(import.meta.url).href;
  assertEquals(sharedTest("runs", here), { name: "runs", ignore: false });
  assertEquals(missingShared(here, "reference/no-such-file-0b7c.json")?.endsWith("no-such-file-0b7c.json"), true);
});

Deno.test("every test that reads ../shared goes through sharedTest (none returns early and passes)", async () => {
  const root = new URL("../", import.meta.url);
  const offenders: string[] = [];
  let users = 0;
  const walk = async (dir: URL, rel: string): Promise<void> => {
    for await (const e of Deno.readDir(dir)) {
      if (e.name.startsWith(".") || e.name === "node_modules") continue;
      if (e.isDirectory) await walk(new URL(`${e.name}/`, dir), `${rel}${e.name}/`);
      else if (e.name.endsWith("_test.ts") || e.name === "helpers.ts") {
        const text = await Deno.readTextFile(new URL(e.name, dir));
        // Paths into the shared folder made other than through tests/shared.ts.
        if (/new URL\(\s*[`"'](\.\.\/)+shared\//.test(text)) {
          offenders.push(`${rel}${e.name}`);
        }
        if (text.includes("sharedTest(")) users++;
      }
    }
  };
  await walk(root, "");
  assertEquals(offenders, [], "these files read ../shared without sharedTest");
  assert(users >= 8, `only ${users} test files use sharedTest`);
});
