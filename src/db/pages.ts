// Byte-bounded pages, cut in the database. A page ends at its row limit or
// where its rows' size would pass a byte budget, whichever comes first, and
// only the page's rows leave PostgreSQL: reading a thousand 1 MiB rows to
// send four of them would pin a gigabyte in the daemon.
//
// How: a window over the keyset order keeps a running sum of each row's
// size; a second window counts the rows past the budget, and the filter
// "none yet" becomes a run condition (PostgreSQL 15+) that stops the scan at
// the first such row, so rows after the cut are neither read nor sized (on
// older servers the result is the same, only the scan goes on to the row
// limit). The first row always comes, however large: one document is far
// below the message limit. `lead` over the same window says whether a row
// follows the last one returned, without sending that row.
import { type Fields, selectList } from "./columns.js";

export interface Page<R> {
  items: R[];
  /** A row follows the last item: the page was cut by its row limit or its byte budget. */
  more: boolean;
  /** The items' size as the SQL measured it (see Sizes). */
  bytes: number;
}

export interface PageLimits {
  rows: number;
  bytes: number;
}

/**
 * How to measure, in SQL, the fields whose size varies (text, JSON); the
 * rest (numbers, times, enums, framing) count in a fixed allowance per row.
 */
export type Sizes<R> = Partial<Record<keyof R, string>>;

const ROW_ALLOWANCE = 128;

/** Text or bytea: the length is in the value's header, so nothing is detoasted. */
export const textSize = (column: string) => `coalesce(octet_length(${column}), 0)`;

/** JSON is printed to be measured: its text is close to the client's encoding (see pageResponse). */
export const jsonSize = (column: string) => `coalesce(octet_length((${column})::text), 0)`;

/**
 * The fields of a read that leaves `omit` out (a read mask without them):
 * those are selected as NULL, so they are neither read nor counted.
 */
export function omitting<R>(fields: Fields<R>, omit: readonly (keyof R)[]): Fields<R> {
  if (omit.length === 0) return fields;
  const kept = { ...fields };
  for (const field of omit) kept[field] = () => "NULL";
  return kept;
}

/** A row's size in bytes, as an SQL expression over the fields not omitted. */
export function rowSize<R>(sizes: Sizes<R>, omit: readonly (keyof R)[] = []): string {
  const measured = (Object.entries(sizes) as [keyof R, string][]).filter(([field]) => !omit.includes(field)).map(([, sql]) => sql);
  return `(${[String(ROW_ALLOWANCE), ...measured].join(" + ")})`;
}

export type Direction = "ASC" | "DESC";

export interface PagedQuery<R> {
  fields: Fields<R>;
  /** The row's size (rowSize), over the table's columns. */
  size: string;
  /** `FROM … WHERE …`, without ORDER BY or LIMIT. */
  from: string;
  /** The keyset order, by the fields' names; its columns must be plain columns, so an index serves it. */
  order: readonly (readonly [keyof R & string, Direction])[];
  /** Parameter references (e.g. "$11") of the row limit and the byte budget. */
  limit: string;
  budget: string;
}

/** The row as pagedSql returns it: the fields, and the marks toPage reads. */
export type Paged<R> = R & { __more: boolean; __upto: number };

/**
 * A page's SQL: the rows of `from` in `order`, at most `limit` of them, and
 * no more than fit in `budget` bytes (but at least one). Each row carries
 * `__more` (a row follows it) and `__upto` (the running size).
 */
export function pagedSql<R>(q: PagedQuery<R>): string {
  const order = q.order.map(([name, direction]) => `"${name}" ${direction}`).join(", ");
  const tableOrder = q.order.map(([name, direction]) => `${plainColumn(q.fields, name)} ${direction}`).join(", ");
  const window = `WINDOW w AS (ORDER BY ${order} ROWS UNBOUNDED PRECEDING)`;
  const names = Object.keys(q.fields as object)
    .map((name) => `"${name}"`)
    .join(", ");
  // Rows are selected and sized above the LIMIT, so that even when the
  // plan sorts (no index serves the filter) only rows read out are sized.
  // A row is past the budget when the sum through it exceeds the budget and
  // it is not the first row (whose sum is its own size).
  return `SELECT ${names}, page.__more AS "__more", page.__upto AS "__upto" FROM (
      SELECT run.*, count(*) FILTER (WHERE run.__upto > ${q.budget}::bigint AND run.__upto > run.__size) OVER w AS __past,
             lead(true, 1, false) OVER w AS __more
        FROM (
          SELECT sized.*, sum(sized.__size) OVER w AS __upto
            FROM (SELECT ${selectList(q.fields)}, ${q.size} AS __size
                    FROM (SELECT * ${q.from} ORDER BY ${tableOrder} LIMIT ${q.limit}::int + 1) AS candidates
                 ) AS sized
          ${window}
        ) AS run
      ${window}
    ) AS page
    WHERE page.__past = 0
    ORDER BY ${order}
    LIMIT ${q.limit}::int`;
}

function plainColumn<R>(fields: Fields<R>, name: keyof R): string {
  const column = fields[name];
  if (typeof column !== "string") throw new Error(`the page order's ${String(name)} must be a plain column`);
  return column;
}

/** The rows of pagedSql as a page: the items without their marks, and whether more follow. */
export function toPage<R>(rows: Paged<R>[]): Page<R> {
  const last = rows[rows.length - 1];
  const items = rows.map(({ __more: _more, __upto: _upto, ...item }) => item as unknown as R);
  return { items, more: last?.__more ?? false, bytes: last?.__upto ?? 0 };
}
