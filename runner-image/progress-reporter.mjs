// A Playwright reporter that writes one JSON line per event, synchronously, as it happens: the
// run began (how many tests, and how many in each file), a test began, a test ended (and how, and
// whether that was its final result), the run ended.
// supercheck-runner reads it back (supercheck_runner/progress.py) to name the tests that were
// still running when the run's deadline stopped Playwright, to count what finished when
// Playwright had to be killed before its own reporters could write, and, in a job's shard, to
// announce each test file as soon as its last test has its final result (a thread follows the file).
//
// Usage in a Playwright config: reporter: [['/path/to/progress-reporter.mjs', { outputFile: '...' }]]

import fs from 'node:fs';
import path from 'node:path';

const ERROR_LIMIT = 4000; // an error's message, for the test-ended line (which keeps one line of it)

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

  fileOf(test) {
    return path.relative(this.root, test.location.file) || test.location.file;
  }

  describe(test) {
    // titlePath(): '' (root), the project, the file, describe() titles, the test's own title.
    const titles = test.titlePath().slice(3);
    const file = this.fileOf(test);
    return { id: test.id, title: titles.join(' › '), location: `${file}:${test.location.line}`, file,
             line: test.location.line };
  }

  onBegin(config, suite) {
    this.root = config.rootDir || '';
    const tests = suite.allTests();
    const files = {};
    for (const test of tests) {
      const file = this.fileOf(test);
      files[file] = (files[file] || 0) + 1;
    }
    this.write({ event: 'begin', total: tests.length, files });
  }

  onTestBegin(test, result) {
    this.write({ event: 'testBegin', ...this.describe(test), retry: result.retry });
  }

  onTestEnd(test, result) {
    const outcome = test.outcome();
    const annotations = test.annotations.map((a) => a.type);
    // Playwright retries a test whose attempt failed unexpectedly while it has retries left, and a
    // serial group's tests skipped after its failure (skipped without test.skip()/fixme()) with the
    // group; any other end is the test's final result (an interrupted attempt is never retried).
    const skippedByOthers = result.status === 'skipped' && !annotations.some((a) => a === 'skip' || a === 'fixme');
    const retried = result.retry < test.retries && result.status !== 'interrupted'
      && ((outcome === 'unexpected' && result.status !== 'skipped') || skippedByOthers);
    const error = result.error?.message || result.errors?.[0]?.message || '';
    this.write({
      event: 'testEnd',
      ...this.describe(test),
      retry: result.retry,
      status: result.status,
      outcome,
      final: !retried,
      annotations,
      duration: result.duration,
      ...(error ? { error: error.slice(0, ERROR_LIMIT) } : {}),
    });
  }

  onEnd(result) {
    this.write({ event: 'end', status: result.status });
  }
}
