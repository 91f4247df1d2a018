// The GraphQL over HTTP conformance audit of graphql-http (serverAudits) against one URL.
// Prints every audit with its result and exits 1 when a MUST audit fails.
import { serverAudits } from 'graphql-http';

const url = process.argv[2];
if (!url) {
  console.error('usage: node audit.mjs <graphql url>');
  process.exit(2);
}
let failedMust = 0;
const counts = { MUST: [0, 0], SHOULD: [0, 0], MAY: [0, 0] };
for (const audit of serverAudits({ url })) {
  const result = await audit.fn();
  const level = audit.name.split(' ')[0];
  const tally = counts[level] ?? [0, 0];
  tally[1] += 1;
  if (result.status === 'ok') {
    tally[0] += 1;
  } else if (level === 'MUST') {
    failedMust += 1;
  }
  const mark = result.status === 'ok' ? 'ok  ' : result.status;
  console.log(`${mark} ${audit.name}${result.status === 'ok' ? '' : `: ${result.reason}`}`);
}
for (const [level, [ok, all]] of Object.entries(counts)) {
  console.log(`${level}: ${ok} of ${all} pass`);
}
process.exit(failedMust === 0 ? 0 : 1);
