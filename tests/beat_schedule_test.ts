import assert from "node:assert/strict";
import { clocked } from "../lib/beat/clocked.ts";
import { crontab, type CrontabOptions } from "../lib/beat/crontab.ts";
import { every } from "../lib/beat/every.ts";
import type { Schedule } from "../lib/beat/schedule.ts";

const D = (iso: string) => new Date(iso);

/** Consecutive ticks after `from`. */
function ticks(schedule: Schedule, from: string, n: number): string[] {
  const out: string[] = [];
  let t: Date | null = D(from);
  for (let i = 0; i < n && t; i++) {
    t = schedule.next(t);
    if (t) out.push(t.toISOString());
  }
  return out;
}

// Expected values were worked out by hand and checked with Python's zoneinfo.
const TABLE: [string, CrontabOptions, string, string[]][] = [
  ["daily midnight crosses a month end", { minute: 0, hour: 0 }, "2024-01-31T12:00:00Z", [
    "2024-02-01T00:00:00.000Z",
    "2024-02-02T00:00:00.000Z",
  ]],
  [
    "day 31 skips months without one",
    { minute: 0, hour: 0, dayOfMonth: 31 },
    "2024-04-01T00:00:00Z",
    [
      "2024-05-31T00:00:00.000Z",
      "2024-07-31T00:00:00.000Z",
      "2024-08-31T00:00:00.000Z",
    ],
  ],
  [
    "Feb 29 waits for a leap year",
    { minute: 0, hour: 0, dayOfMonth: 29, monthOfYear: "feb" },
    "2024-03-01T00:00:00Z",
    [
      "2028-02-29T00:00:00.000Z",
      "2032-02-29T00:00:00.000Z",
    ],
  ],
  [
    "Feb 29 that is a Monday (Celery's and-rule)",
    { minute: 0, hour: 0, dayOfMonth: 29, monthOfYear: 2, dayOfWeek: "mon" },
    "2024-03-01T00:00:00Z",
    [
      "2044-02-29T00:00:00.000Z",
    ],
  ],
  ["dayOfWeek 7 is Sunday", { minute: 0, hour: 12, dayOfWeek: 7 }, "2024-07-01T00:00:00Z", [
    "2024-07-07T12:00:00.000Z",
    "2024-07-14T12:00:00.000Z",
  ]],
  ["dayOfWeek 0 is Sunday", { minute: 0, hour: 12, dayOfWeek: "0" }, "2024-07-01T00:00:00Z", [
    "2024-07-07T12:00:00.000Z",
  ]],
  [
    "weekdays 09:00 in Paris from a Friday",
    { minute: 0, hour: 9, dayOfWeek: "mon-fri", timezone: "Europe/Paris" },
    "2024-07-05T08:00:00Z",
    [
      "2024-07-08T07:00:00.000Z",
      "2024-07-09T07:00:00.000Z",
    ],
  ],
  [
    "and-rule: Friday the 13th",
    { minute: 0, hour: 0, dayOfMonth: 13, dayOfWeek: "fri" },
    "2024-09-01T00:00:00Z",
    [
      "2024-09-13T00:00:00.000Z",
      "2024-12-13T00:00:00.000Z",
    ],
  ],
  [
    "or-rule: every Friday and every 13th",
    { minute: 0, hour: 0, dayOfMonth: 13, dayOfWeek: "fri", dayMatch: "or" },
    "2024-09-01T00:00:00Z",
    [
      "2024-09-06T00:00:00.000Z",
      "2024-09-13T00:00:00.000Z",
      "2024-09-20T00:00:00.000Z",
    ],
  ],
  ["steps within a range", { minute: "10-50/20", hour: 3 }, "2024-01-01T00:00:00Z", [
    "2024-01-01T03:10:00.000Z",
    "2024-01-01T03:30:00.000Z",
    "2024-01-01T03:50:00.000Z",
    "2024-01-02T03:10:00.000Z",
  ]],
  [
    "New York spring-forward gap: 02:30 fires once at 03:00 EDT",
    { minute: 30, hour: 2, timezone: "America/New_York" },
    "2024-03-09T12:00:00Z",
    [
      "2024-03-10T07:00:00.000Z",
      "2024-03-11T06:30:00.000Z",
    ],
  ],
  [
    "every quarter hour inside the gap collapses to one 03:00 fire",
    { minute: "*/15", hour: 2, timezone: "America/New_York" },
    "2024-03-10T05:00:00Z",
    [
      "2024-03-10T07:00:00.000Z",
      "2024-03-11T06:00:00.000Z",
    ],
  ],
  [
    "New York fall-back overlap: 01:30 fires once, on its first occurrence",
    { minute: 30, hour: 1, timezone: "America/New_York" },
    "2024-11-02T12:00:00Z",
    [
      "2024-11-03T05:30:00.000Z",
      "2024-11-04T06:30:00.000Z",
    ],
  ],
  [
    "the repeated hour is not replayed",
    { minute: "0,30", hour: "1-2", timezone: "America/New_York" },
    "2024-11-03T04:00:00Z",
    [
      "2024-11-03T05:00:00.000Z",
      "2024-11-03T05:30:00.000Z",
      "2024-11-03T07:00:00.000Z",
      "2024-11-03T07:30:00.000Z",
    ],
  ],
  [
    "London gap: 01:30 fires at 02:00 BST",
    { minute: 30, hour: 1, timezone: "Europe/London" },
    "2024-03-30T12:00:00Z",
    [
      "2024-03-31T01:00:00.000Z",
      "2024-04-01T00:30:00.000Z",
    ],
  ],
  [
    "Sydney gap (southern hemisphere, October)",
    { minute: 30, hour: 2, timezone: "Australia/Sydney" },
    "2024-10-05T00:00:00Z",
    [
      "2024-10-05T16:00:00.000Z",
      "2024-10-06T15:30:00.000Z",
    ],
  ],
  [
    "half-hour offset zone (Kolkata)",
    { minute: 0, hour: 9, timezone: "Asia/Kolkata" },
    "2024-01-01T00:00:00Z",
    [
      "2024-01-01T03:30:00.000Z",
    ],
  ],
  [
    "wrap-around day range fri-mon",
    { minute: 0, hour: 0, dayOfWeek: "fri-mon" },
    "2024-07-02T00:00:00Z",
    [
      "2024-07-05T00:00:00.000Z",
      "2024-07-06T00:00:00.000Z",
      "2024-07-07T00:00:00.000Z",
      "2024-07-08T00:00:00.000Z",
      "2024-07-12T00:00:00.000Z",
    ],
  ],
];

for (const [what, options, from, expected] of TABLE) {
  Deno.test(`crontab().next(): ${what}`, () => {
    assert.deepEqual(ticks(crontab(options), from, expected.length), expected);
  });
}

Deno.test("crontab().next() is strictly after its argument", () => {
  const s = crontab({ minute: 30, hour: 1 });
  assert.equal(s.next(D("2024-01-01T01:30:00Z"))?.toISOString(), "2024-01-02T01:30:00.000Z");
  assert.equal(s.next(D("2024-01-01T01:29:59.999Z"))?.toISOString(), "2024-01-01T01:30:00.000Z");
});

Deno.test("every() ticks on the epoch grid and parses durations", () => {
  assert.deepEqual(ticks(every("30s"), "2024-01-01T00:00:10Z", 2), [
    "2024-01-01T00:00:30.000Z",
    "2024-01-01T00:01:00.000Z",
  ]);
  assert.equal(every(45).next(D("2024-01-01T00:00:00Z")).toISOString(), "2024-01-01T00:00:45.000Z");
  assert.equal(every("250ms").ms, 250);
  assert.equal(every("1h").ms, 3_600_000);
  assert.equal(every(1.5).ms, 1_500);
  for (const bad of ["", "5 minutes", "-1s", "0s", "1w"]) {
    assert.throws(() => every(bad), RangeError, bad);
  }
  assert.throws(() => every(0), RangeError);
  assert.throws(() => every(Number.NaN), RangeError);
});

Deno.test("every().toCron() covers what cron can express and rejects the rest", () => {
  assert.equal(every("1m").toCron(), "* * * * *");
  assert.equal(every("5m").toCron(), "*/5 * * * *");
  assert.equal(every(3600).toCron(), "0 * * * *");
  assert.equal(every("2h").toCron(), "0 */2 * * *");
  assert.equal(every("1d").toCron(), "0 0 * * *");
  assert.throws(() => every(45).toCron(), /Cannot express every 45s as a cron schedule/);
  assert.throws(() => every("90m").toCron(), /every 90m.*N dividing 60/);
  assert.throws(() => every("7m").toCron(), RangeError);
  assert.throws(() => every("2d").toCron(), RangeError);
});

Deno.test("crontab().toCron() renders UTC schedules with day names", () => {
  assert.equal(
    crontab({ minute: "*/15", hour: "9-17", dayOfWeek: "mon-fri" }).toCron(),
    "0,15,30,45 9-17 * * MON-FRI",
  );
  assert.equal(crontab({ minute: 0, hour: 0, dayOfWeek: "0,6" }).toCron(), "0 0 * * SUN,SAT");
  assert.equal(crontab({ minute: 5, dayOfWeek: "1-7" }).toCron(), "5 * * * *");
  assert.equal(crontab({ minute: 0, hour: 4, monthOfYear: "jan,jul" }).toCron(), "0 4 * 1,7 *");
  assert.equal(
    crontab({ minute: 0, hour: 0, dayOfMonth: 13, dayOfWeek: "fri", dayMatch: "or" }).toCron(),
    "0 0 13 * FRI",
  );
  assert.throws(
    () => crontab({ minute: 0, hour: 0, dayOfMonth: 13, dayOfWeek: "fri" }).toCron(),
    /either the day of month or the day of week/,
  );
  assert.throws(
    () => crontab({ minute: 0, hour: 9, timezone: "Europe/Paris" }).toCron(),
    /Deno.cron reads cron in UTC only/,
  );
});

Deno.test("crontab() rejects bad fields with clear errors", () => {
  assert.throws(() => crontab({ minute: 60 }), /minute 60: 60 is outside 0-59/);
  assert.throws(() => crontab({ hour: "abc" }), /hour "abc"/);
  assert.throws(() => crontab({ minute: "5-" }), RangeError);
  assert.throws(() => crontab({ minute: "*/0" }), /step "0"/);
  assert.throws(() => crontab({ dayOfWeek: "funday" }), /dayOfWeek "funday"/);
  assert.throws(() => crontab({ dayOfMonth: 0 }), /outside 1-31/);
  assert.throws(() => crontab({ timezone: "Mars/Olympus" }), /Mars\/Olympus/);
  assert.throws(() => crontab({ dayOfMonth: 30, monthOfYear: 2 }), /no month has those days/);
  assert.throws(() => crontab({ minute: [] }), RangeError);
});

Deno.test("clocked() fires once and cannot be a cron", () => {
  const once = clocked("2030-01-01T00:00:00Z");
  assert.equal(once.next(D("2029-01-01T00:00:00Z"))?.toISOString(), "2030-01-01T00:00:00.000Z");
  assert.equal(once.next(D("2030-01-01T00:00:00Z")), null);
  assert.throws(() => once.toCron(), /fires once/);
  assert.throws(() => clocked("not a date"), RangeError);
});
