// Lists every skipped test with its reason when a run ends. The default
// reporter shows a skip's note only where it lists each test (one file,
// on a terminal); a test that does not apply (a tier contract a tier has
// no part in) must say why in every run, `npm test` in CI included.
import type { Reporter, TestModule, Vitest } from 'vitest/node';

export default class SkippedReporter implements Reporter {
  private log: (line: string) => void = console.log;
  /** Tests left out by `-t` are skipped too, without a note: then only noted skips are listed. */
  private filtered = false;

  onInit(ctx: Vitest): void {
    this.log = (line) => ctx.logger.log(line);
    this.filtered = ctx.config.testNamePattern !== undefined;
  }

  onTestRunEnd(modules: ReadonlyArray<TestModule>): void {
    const lines: string[] = [];
    for (const m of modules) {
      for (const t of m.children.allTests('skipped')) {
        const r = t.result();
        const note = r.state === 'skipped' ? r.note : undefined;
        if (!note && this.filtered) continue;
        lines.push(`  ↓ ${m.relativeModuleId} > ${t.fullName}  [${note ?? 'no reason given'}]`);
      }
    }
    if (lines.length > 0) this.log(`\nSkipped (${lines.length}):\n${lines.join('\n')}`);
  }
}
