/**
 * A sweep config for train.ts: a grid of learning rates and epoch counts (6 runs), each with
 * the same metadata. Try it without running anything first:
 *
 * ```sh
 * ./keel run examples/sweep/train.ts --config examples/sweep/sweep.ts --dry-run
 * ```
 * @module
 */

import { grid } from "../../mod.ts";

export default grid(
  { lr: [0.01, 0.05, 0.1], epochs: [50, 200] },
  { metadata: { experiment: "lr-vs-epochs" } },
);
