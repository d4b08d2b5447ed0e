// A resource's one field list. Stores select rows straight into their
// records (`session_id AS "sessionId"`), so each field is named once, here,
// instead of in a row type, a row-to-record mapper and the SELECT list.

/** A column name, or an SQL expression built for a table qualifier ("" or "j."). */
export type Column = string | ((t: string) => string);

export type Fields<R> = { [K in keyof R]: Column };

/** `col AS "field", ...`, each column qualified with `t` (e.g. "s.") when given. */
export function selectList<R>(fields: Fields<R>, t = ""): string {
  return Object.entries(fields as Record<string, Column>)
    .map(([field, column]) => `${typeof column === "function" ? column(t) : t + column} AS "${field}"`)
    .join(", ");
}
