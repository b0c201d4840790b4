// Types of npm:parse-prometheus-text-format (the package ships none).
/** Parses Prometheus text exposition format into metric families. */
declare function parsePrometheusTextFormat(text: string): unknown[];
export default parsePrometheusTextFormat;
