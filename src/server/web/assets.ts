/**
 * The console's script and style, read into the program when it is built (text imports), so the
 * dashboard serves them without reading files at run time and a compiled binary carries them.
 *
 * @module
 */
import script from "./static/console.js" with { type: "text" };
import style from "./static/console.css" with { type: "text" };

/** The console's one script (`/static/console.js`). */
export const CONSOLE_JS: string = script;
/** The console's style sheet (`/static/console.css`). */
export const CONSOLE_CSS: string = style;
