/**
 * Store locations: which `--db` values name a PostgreSQL database, and how to print one without
 * its password. Kept apart from the PostgreSQL store so that a SQLite dashboard never loads the
 * PostgreSQL driver.
 *
 * @module
 */

/**
 * A connection URL without its password, for messages.
 *
 * @param url A `postgres://` URL.
 * @returns The URL with the password replaced by `***`.
 */
export function redactUrl(url: string): string {
  if (!isPostgresUrl(url)) return url;
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = "***";
    return parsed.toString();
  } catch {
    return url.replace(/\/\/([^:/@]*):[^@]*@/, "//$1:***@");
  }
}

/** Whether `db` names a PostgreSQL database (`postgres://` or `postgresql://`). */
export function isPostgresUrl(db: string): boolean {
  return /^postgres(ql)?:\/\//i.test(db.trim());
}
