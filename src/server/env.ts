/**
 * The Hono environment of the dashboard: what middleware hands to routes.
 *
 * @module
 */
import type { AgentRecord } from "../store/mod.ts";
import type { AgentCall } from "./auth/call.ts";
import type { RefusalLines } from "../log/refusal_lines.ts";

/** Hono environment of the dashboard: what middleware hands to routes. */
export type ServerEnv = {
  Bindings: { remoteAddr?: Deno.Addr } | undefined;
  Variables: {
    /** The authenticated agent. */
    agent: AgentRecord;
    /** Dev mode and a token-less agent: the signature steps are skipped. */
    unsigned: boolean;
    /**
     * How an enqueue was authorised: the admin token, an operator of a dev-mode dashboard (no
     * `X-Agent-Id`), an agent's signed request, or a token-less agent in dev mode.
     */
    via: "admin" | "dev-operator" | "agent" | "dev-agent";
    /** The agent request as the auth steps see it (body memoized on it). */
    call: AgentCall;
    /** A `GET` carries a valid console session cookie (set by the console, `web/routes.tsx`). */
    consoleSession: boolean;
    /**
     * Whether that session is still valid (not logged out, not expired): what it opened that
     * lasts, an event stream, ends when not.
     */
    consoleSessionValid: () => boolean;
    /**
     * Takes a place for an event stream of that session: its release, or `undefined` when the
     * session holds as many streams as it may.
     */
    consoleSessionStream: () => (() => void) | undefined;
    /** How many audit lines of refusals the dashboard still writes. */
    refusalLines: RefusalLines;
  };
};
