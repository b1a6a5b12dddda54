/**
 * Step 8 of the agent pipeline (and the body of every JSON route): a bounded, UTF-8 JSON body
 * of the route's schema, typed as the schema's output.
 *
 * @module
 */
import type { MiddlewareHandler } from "hono";
import type { z } from "zod";
import { describeZodError, relevantIssues, shortForm, visibleText } from "../../protocol/mod.ts";
import { jsonProblem, MAX_JSON_DEPTH } from "../body.ts";
import type { ServerEnv } from "../env.ts";
import { HttpError } from "../http_error.ts";
import { type AgentCall, callOf, rawBodyOf } from "./call.ts";

/** The Hono environment after {@link jsonBody}: `c.get("body")` is the schema's output type. */
export type BodyEnv<T> = ServerEnv & { Variables: { body: T } };

/**
 * Step 8: the body is at most the limit, UTF-8 JSON, and of the schema; the parsed value is put on
 * the context as `body`, typed as the schema's output.
 *
 * @param schema The zod schema of the body.
 * @param options The body limit.
 * @returns The middleware.
 */
export function jsonBody<S extends z.ZodType>(
  schema: S,
  options: { maxBodyBytes: number },
): MiddlewareHandler<BodyEnv<z.output<S>>> {
  return async function jsonBodyStep(c, next) {
    c.set("body", await jsonBodyOf(callOf(c), schema, options));
    await next();
  };
}

/**
 * Refuses a body sent with a content coding (`Content-Encoding: gzip`): the dashboard reads bodies
 * as sent, and a compressed one would be told it is "not UTF-8". `identity` is no coding.
 *
 * @param call The request.
 * @throws {HttpError} `415` naming the coding.
 */
function refuseContentCoding(call: AgentCall): void {
  const coding = call.headers.get("content-encoding");
  if (coding === null) return;
  const codings = coding.split(",").map((c) => c.trim().toLowerCase()).filter((c) => c !== "");
  if (codings.every((c) => c === "identity")) return;
  throw new HttpError(
    415,
    `Content-Encoding ${shortForm(coding.trim())} is not supported; send the body uncompressed`,
  );
}

/** The `413` of a body beyond the route's limit. */
function tooLarge(limit: number, size: number): HttpError {
  return new HttpError(413, `request body is larger than ${limit} bytes`, {
    details: { limit_bytes: limit, size_bytes: size },
  });
}

/**
 * Refuses a body from its request's head, before it is asked for (`Expect: 100-continue`): sent
 * with a content coding, or with a `Content-Length` beyond the route's limit. A body read already
 * (by an earlier step) is left to the checks of what was read.
 *
 * @param call The request.
 * @param maxBodyBytes The route's limit.
 * @throws {HttpError} `413` beyond the limit; `415` for a compressed body.
 */
export function refuseBodyFromHead(call: AgentCall, maxBodyBytes: number): void {
  if (call.rawBody !== undefined) return;
  refuseContentCoding(call);
  const declared = Number(call.headers.get("content-length") ?? NaN);
  if (declared > maxBodyBytes) throw tooLarge(maxBodyBytes, declared);
}

/** Decodes UTF-8 and refuses a malformed sequence (stateless between whole-body calls). */
const UTF8 = new TextDecoder("utf-8", { fatal: true });

/**
 * Step 8 as a plain function (the routes answered without Hono): the body of a call read (once),
 * at most the limit, UTF-8 JSON (without a byte order mark), nested at most {@link MAX_JSON_DEPTH}
 * deep, with finite numbers only, and of the schema.
 *
 * @param call The request.
 * @param schema The zod schema of the body.
 * @param options The body limit.
 * @returns The parsed body, typed as the schema's output.
 * @throws {HttpError} `413` over the limit; `415` for a compressed body; `400` for a body that is
 *   not UTF-8 JSON of the schema.
 */
export async function jsonBodyOf<S extends z.ZodType>(
  call: AgentCall,
  schema: S,
  options: { maxBodyBytes: number },
): Promise<z.output<S>> {
  // A body no signature step read (an operator's, dev mode's unsigned agent's) is refused from
  // its head before it is asked for, as a signed one was by the signature step.
  refuseBodyFromHead(call, options.maxBodyBytes);
  // ... and one growing beyond the limit as it arrives (chunked) is refused as soon as it does.
  const body = await rawBodyOf(call, { maxBodyBytes: options.maxBodyBytes, stopAtLimit: true });
  refuseContentCoding(call);
  // The body may have been read first with a larger limit (by the signature step): the route's
  // own limit holds all the same.
  if (body.bytes === null || body.size > options.maxBodyBytes) {
    throw tooLarge(options.maxBodyBytes, body.size);
  }
  const bytes = body.bytes;
  if (bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) {
    // The decoder would drop it without a word: JSON on the wire has none (RFC 8259 §8.1).
    throw new HttpError(
      400,
      "request body begins with a byte order mark (U+FEFF), which JSON sent over a network must " +
        "not have; send the body without it",
    );
  }
  let text: string;
  try {
    text = UTF8.decode(bytes);
  } catch {
    throw new HttpError(400, "request body is not UTF-8");
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new HttpError(400, `request body is not JSON: ${shortForm((error as Error).message)}`);
  }
  const problem = jsonProblem(value, MAX_JSON_DEPTH);
  if (problem?.kind === "too_deep") {
    throw new HttpError(
      400,
      `request body nests arrays and objects more than ${MAX_JSON_DEPTH} levels deep`,
      { details: { max_depth: MAX_JSON_DEPTH } },
    );
  }
  if (problem?.kind === "non_finite") {
    // `1e400` parses as Infinity, which would be stored as null.
    const field = visibleText(shortForm(problem.path.join("."))) || "(body)";
    const message = "must be a finite number (at most about 1.8e308)";
    throw new HttpError(400, `field "${field}": ${message}`, {
      details: [{ field, message }],
    });
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    throw new HttpError(400, describeZodError(parsed.error), {
      details: relevantIssues(parsed.error).slice(0, 10).map((issue) => ({
        field: visibleText(shortForm(issue.path.join("."))) || "(body)",
        // A message may quote a value the client sent, shown as the error's sentence shows it.
        message: visibleText(issue.message),
      })),
    });
  }
  return parsed.data;
}
