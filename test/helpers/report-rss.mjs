// Preloaded (node --import) into a vrift process by tests that check
// memory stays bounded: writes the peak RSS (KiB) to $VRIFT_TEST_RSS_FILE.
import { writeFileSync } from 'node:fs';

process.on('exit', () => {
  if (process.env.VRIFT_TEST_RSS_FILE) writeFileSync(process.env.VRIFT_TEST_RSS_FILE, String(process.resourceUsage().maxRSS));
});
