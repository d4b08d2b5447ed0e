// `npm run bench -- <name>`: runs one benchmark and prints its table.
import { benchCluster } from "./cluster.js";
import { benchGrowth } from "./growth.js";
import { benchJobs } from "./jobs.js";
import { benchKeyValue } from "./kv.js";
import { benchLimits } from "./limits.js";
import { benchSessions } from "./sessions.js";
import { benchTraces } from "./traces.js";

const BENCHMARKS: Record<string, () => Promise<void>> = {
  sessions: benchSessions,
  traces: benchTraces,
  kv: benchKeyValue,
  jobs: benchJobs,
  limits: benchLimits,
  cluster: benchCluster,
  growth: benchGrowth,
};

const name = process.argv[2];
const bench = name ? BENCHMARKS[name] : undefined;
if (!bench) {
  console.error(`usage: npm run bench -- <${Object.keys(BENCHMARKS).join("|")}>`);
  process.exit(2);
}
bench().then(
  () => process.exit(0),
  (error) => {
    console.error(error);
    process.exit(1);
  },
);
