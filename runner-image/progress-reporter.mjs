// A Playwright reporter that writes one JSON line per event, synchronously, as it happens: the
// run began (how many tests), a test began, a test ended (and how), the run ended.
// supercheck-runner reads it back (supercheck_runner/progress.py) to name the tests that were
// still running when the run's deadline stopped Playwright, and to count what finished when
// Playwright had to be killed before its own reporters could write.
//
// Usage in a Playwright config: reporter: [['/path/to/progress-reporter.mjs', { outputFile: '...' }]]

import fs from 'node:fs';
import path from 'node:path';

export default class ProgressReporter {
  constructor(options = {}) {
    this.file = options.outputFile || 'progress.jsonl';
    this.root = '';
    fs.mkdirSync(path.dirname(path.resolve(this.file)), { recursive: true });
    fs.writeFileSync(this.file, '');
  }

  printsToStdio() {
    return false;
  }

  write(event) {
    try {
      fs.appendFileSync(this.file, JSON.stringify({ ...event, time: Date.now() }) + '\n');
    } catch {
      // A full disk must not fail the run: the JSON report still counts.
    }
  }

  describe(test) {
    // titlePath(): '' (root), the project, the file, describe() titles, the test's own title.
    const titles = test.titlePath().slice(3);
    const file = path.relative(this.root, test.location.file) || test.location.file;
    return { id: test.id, title: titles.join(' › '), location: `${file}:${test.location.line}` };
  }

  onBegin(config, suite) {
    this.root = config.rootDir || '';
    this.write({ event: 'begin', total: suite.allTests().length });
  }

  onTestBegin(test, result) {
    this.write({ event: 'testBegin', ...this.describe(test), retry: result.retry });
  }

  onTestEnd(test, result) {
    this.write({
      event: 'testEnd',
      ...this.describe(test),
      retry: result.retry,
      status: result.status,
      outcome: test.outcome(),
      annotations: test.annotations.map((a) => a.type),
      duration: result.duration,
    });
  }

  onEnd(result) {
    this.write({ event: 'end', status: result.status });
  }
}
