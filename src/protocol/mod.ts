/**
 * The wire protocol shared by the agent and the dashboard.
 *
 * @module
 */
export * from "./headers.ts";
export * from "./schemas.ts";
export * from "./signing.ts";
export * from "./live.ts";
export * from "./runs.ts";
export * from "./short_form.ts";
export * from "./visible_text.ts";
export * from "./dashboard_url.ts";
