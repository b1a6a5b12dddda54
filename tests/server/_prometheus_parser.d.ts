/** Types of the `parse-prometheus-text-format` npm package (it ships none). */
declare function parsePrometheusTextFormat(text: string): Array<{
  name: string;
  help: string;
  type: string;
  metrics: Array<Record<string, unknown>>;
}>;
export default parsePrometheusTextFormat;
