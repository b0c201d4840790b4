/**
 * The flags of `services`, declared once (common/options.ts). No imports that need a permission.
 * @module
 */

import { CONNECTION_FLAGS, HELP_FLAG } from "../common/cli.ts";
import type { OptionsTable } from "../common/options.ts";

/** `services`' own flags. */
export const SERVICES_FLAGS = {
  json: { kind: "boolean", help: "print status as JSON" },
  "upgrade-kafka": {
    kind: "boolean",
    help: 'let "up" start the selected Kafka on data an older version formatted (in place, ' +
      'one-way); without it "up" refuses and says what to do',
  },
  ...HELP_FLAG,
} as const satisfies OptionsTable;

/** Every flag of `services`. */
export const SERVICES_COMMAND = { ...SERVICES_FLAGS, ...CONNECTION_FLAGS } as const;
