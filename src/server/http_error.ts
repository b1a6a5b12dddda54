/**
 * The one exception type of the dashboard's routes and middleware, turned into the JSON error body
 * of docs/protocol.md §1 (`{"error": "<sentence>", "details"?: ...}`) in one place.
 *
 * @module
 */
import { visibleText } from "../protocol/visible_text.ts";

/** The statuses the dashboard fails with. */
export type ErrorStatus =
  | 400
  | 401
  | 403
  | 404
  | 408
  | 409
  | 413
  | 415
  | 429
  | 500
  | 503
  | 507;

/** Options of {@link HttpError}. */
export interface HttpErrorOptions extends ErrorOptions {
  /** Extra structured information for the `details` field; never a secret. */
  details?: unknown;
  /** Extra response headers, e.g. `Retry-After`. */
  headers?: Record<string, string>;
}

/**
 * The challenge every `401` carries (RFC 9110 §11.6.1 asks one of each `401`): agents and
 * operators both authenticate with a bearer token (RFC 6750).
 */
export const BEARER_CHALLENGE = 'Bearer realm="status"';

/**
 * An HTTP failure: a status and one sentence that never echoes a secret. A value of the client's
 * the sentence quotes (an id decoded from the path, a header) is shown with its control and
 * bidirectional formatting characters as escapes ({@link visibleText}): `command \u202eabc does not
 * exist`, never a sentence a terminal obeys or an override turns around.
 */
export class HttpError extends Error {
  /** The HTTP status of the answer. */
  readonly status: ErrorStatus;
  /** The `details` field of the answer, if any. */
  readonly details?: unknown;
  /** Extra response headers (a `401`'s `WWW-Authenticate` among them). */
  readonly headers: Record<string, string>;

  /**
   * Makes an HTTP failure.
   *
   * @param status The HTTP status.
   * @param message One sentence, sentence case, no trailing period (its control and
   *   bidirectional formatting characters are kept as escapes).
   * @param options Details, headers and cause.
   */
  constructor(status: ErrorStatus, message: string, options: HttpErrorOptions = {}) {
    super(visibleText(message), { cause: options.cause });
    this.name = "HttpError";
    this.status = status;
    this.details = options.details;
    const headers = options.headers ?? {};
    const challenged = Object.keys(headers).some((name) =>
      name.toLowerCase() === "www-authenticate"
    );
    this.headers = status === 401 && !challenged
      ? { ...headers, "WWW-Authenticate": BEARER_CHALLENGE }
      : headers;
  }

  /** The JSON body of the answer. */
  toJSON(): { error: string; details?: unknown } {
    return this.details === undefined
      ? { error: this.message }
      : { error: this.message, details: this.details };
  }
}
