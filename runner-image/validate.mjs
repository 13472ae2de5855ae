#!/usr/bin/env node
// Static facts about a test script, for supercheck-runner's validation (runner-image/supercheck_runner/validate.py).
//
// Usage: node validate.mjs <file>...
// Prints one JSON object per file, one per line, in the order given:
//   { "syntaxErrors": [{line, column, message}],
//     "imports":      [{specifier, line, column, kind, uses}],   kind: import | export-from | import-equals | require | dynamic-import
//                     uses: [{member, expression, line, column}]: what the script does with the module
//                     (fs.readFileSync(...) -> member readFileSync, expression fs.readFileSync)
//     "findings":     [{line, column, rule, message}],      constructs that are refused whatever the allow-list
//     "hasDefaultExport": bool,
//     "summaryPaths": [{path, prefix, line, column}],        k6: the files handleSummary returns, as spelled
//     "fileReads":    [{call, path, prefix, line, column}],  k6: open(path) & co., path null when computed
//     "tooDeep":      {line, column, limit} }                only this, when the file nests deeper than
//                                                            the parser can follow (line null: found by
//                                                            the parser running out of stack)
//
// This script only reports what it sees; the *decision* (which modules are allowed, how the
// message reads) is made in Python, where it is unit-tested and configurable. Lines and columns
// are 1-based, as an editor shows them.
//
// TypeScript's own parser is used because it reads both TypeScript and JavaScript (a .js spec
// is parsed as TSX-free TypeScript, a superset), and reports syntax errors with positions.
//
// TypeScript is 9 MB of JavaScript: compiling it is most of this script's time (about 0.3 s of
// 0.45 s for one small spec), paid by every run before its test starts. It is loaded with V8's code
// cache (SUPERCHECK_VALIDATOR_CACHE, default .cache/typescript.v8 beside this script; the image
// builds it), which V8 checks against the source, its own version and flags and ignores if stale;
// a missing or stale cache is written after the files are checked (so it holds the parser's
// functions too), when the folder is writable. The cache changes how fast, never what is checked.

import { isAscii } from 'node:buffer';
import fs from 'node:fs';
import { createRequire, Module } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import vm from 'node:vm';

const require = createRequire(import.meta.url);
const CACHE = process.env.SUPERCHECK_VALIDATOR_CACHE ||
  path.join(path.dirname(fileURLToPath(import.meta.url)), '.cache', 'typescript.v8');

// A source file as text. TypeScript's 9 MB are ASCII: copied as such they make the same string as
// UTF-8 decoding makes, in half its time (10 ms of every validation); anything else is decoded.
function readSource(file) {
  const bytes = fs.readFileSync(file);
  return isAscii(bytes) ? bytes.toString('latin1') : bytes.toString('utf8');
}

// TypeScript as require('typescript') would load it (a CommonJS module), compiled with the code cache.
function loadTypescript() {
  const file = require.resolve('typescript');
  let cachedData;
  try {
    cachedData = fs.readFileSync(CACHE);
  } catch {}
  const script = new vm.Script(Module.wrap(readSource(file)), { filename: file, cachedData });
  const module = { exports: {}, filename: file, id: file, loaded: false };
  script.runInThisContext().call(module.exports, module.exports, createRequire(file), module, file,
    path.dirname(file));
  return { ts: module.exports, stale: cachedData === undefined || script.cachedDataRejected, script };
}

function writeCache(loaded) {
  if (!loaded.stale) return;
  try {
    fs.mkdirSync(path.dirname(CACHE), { recursive: true });
    const partial = `${CACHE}.${process.pid}`;
    fs.writeFileSync(partial, loaded.script.createCachedData());
    fs.renameSync(partial, CACHE); // whole or not at all: another run may be reading it
  } catch {} // read-only (the image's, once built): the next run compiles TypeScript as this one did
}

const typescript = loadTypescript();
const ts = typescript.ts;

const files = process.argv.slice(2);
if (files.length === 0) {
  process.stderr.write('usage: node validate.mjs <file>...\n');
  process.exit(2);
}

function facts(file) {
  const text = fs.readFileSync(file, 'utf8');
  const isTsx = /\.[jt]sx$/.test(file);
  const scriptKind = isTsx ? ts.ScriptKind.TSX : ts.ScriptKind.TS;
  const source = ts.createSourceFile(path.basename(file), text, ts.ScriptTarget.Latest, true, scriptKind);

  function position(node) {
    const start = typeof node === 'number' ? node : node.getStart(source);
    const { line, character } = source.getLineAndCharacterOfPosition(start);
    return { line: line + 1, column: character + 1 };
  }

  // Syntax errors: the parser's own diagnostics (createSourceFile keeps them on parseDiagnostics).
  // transpileModule is the public API that reports the same syntactic diagnostics, used as the fallback.
  let diagnostics = source.parseDiagnostics;
  if (!Array.isArray(diagnostics)) {
    diagnostics = ts.transpileModule(text, { fileName: path.basename(file), reportDiagnostics: true }).diagnostics || [];
  }
  const syntaxErrors = diagnostics.map((d) => ({
    ...position(d.start ?? 0),
    message: ts.flattenDiagnosticMessageText(d.messageText, '\n'),
  }));

  const imports = [];
  const findings = [];
  // Local names bound to an import: name -> { entry (in imports), member: null for the module itself
  // (import fs, import * as fs, const fs = require(...)), or the imported name (import { readFileSync }) }.
  const bindings = new Map();

  function addImport(specifier, node, kind, bindingsOf) {
    const entry = { specifier, ...position(node), kind, uses: [] };
    imports.push(entry);
    for (const [local, member] of bindingsOf) bindings.set(local, { entry, member });
  }

  function importClauseBindings(clause) {
    const out = [];
    if (!clause) return out;
    if (clause.name) out.push([clause.name.text, null]);
    const named = clause.namedBindings;
    if (named && ts.isNamespaceImport(named)) out.push([named.name.text, null]);
    if (named && ts.isNamedImports(named)) {
      for (const el of named.elements) out.push([el.name.text, (el.propertyName || el.name).text]);
    }
    return out;
  }

  function requireBindings(call) {
    // const fs = require('fs') / const { readFileSync: read } = require('fs')
    const decl = call.parent;
    if (!decl || !ts.isVariableDeclaration(decl) || decl.initializer !== call) return [];
    if (ts.isIdentifier(decl.name)) return [[decl.name.text, null]];
    if (ts.isObjectBindingPattern(decl.name)) {
      return decl.name.elements
        .filter((el) => ts.isIdentifier(el.name))
        .map((el) => [el.name.text, el.propertyName && ts.isIdentifier(el.propertyName) ? el.propertyName.text : el.name.text]);
    }
    return [];
  }

  function unparen(node) {
    while (ts.isParenthesizedExpression(node)) node = node.expression;
    return node;
  }

  function finding(node, rule, message) {
    findings.push({ ...position(node), rule, message });
  }

  function literalText(node) {
    if (node && (ts.isStringLiteral(node) || ts.isNoSubstitutionTemplateLiteral(node))) return node.text;
    return null;
  }

  // Methods of Playwright objects that write a file where their argument says.
  const PATH_WRITERS = new Set(['saveAs']);

  function isEscapingPath(p) {
    // Absolute, home-relative or climbing out: the file would land outside the work directory.
    return path.isAbsolute(p) || p.startsWith('~') || p.split(/[\\/]/).includes('..');
  }

  function visit(node) {
    if (ts.isImportDeclaration(node)) {
      const typeOnly = node.importClause && node.importClause.isTypeOnly;
      const spec = literalText(node.moduleSpecifier);
      if (!typeOnly && spec !== null) addImport(spec, node, 'import', importClauseBindings(node.importClause));
    } else if (ts.isExportDeclaration(node) && node.moduleSpecifier) {
      const spec = literalText(node.moduleSpecifier);
      if (!node.isTypeOnly && spec !== null) addImport(spec, node, 'export-from', []);
    } else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference)) {
      const spec = literalText(node.moduleReference.expression);
      if (spec !== null) addImport(spec, node, 'import-equals', [[node.name.text, null]]);
    } else if (ts.isCallExpression(node)) {
      const callee = node.expression;
      const arg = node.arguments[0];
      if (callee.kind === ts.SyntaxKind.ImportKeyword) {
        const spec = literalText(arg);
        if (spec === null) finding(node, 'dynamic-import', 'import() with a computed module name cannot be checked; use a string literal');
        else addImport(spec, node, 'dynamic-import', []);
      } else if (ts.isIdentifier(unparen(callee)) && unparen(callee).text === 'require') { // (require)('x') too
        const spec = literalText(arg);
        if (spec === null) finding(node, 'dynamic-require', 'require() with a computed module name cannot be checked; use a string literal');
        else addImport(spec, node, 'require', requireBindings(node));
      } else if (ts.isPropertyAccessExpression(callee) && PATH_WRITERS.has(callee.name.text)) {
        const p = literalText(arg);
        if (p !== null && isEscapingPath(p)) {
          finding(node, 'write-outside-workdir', `${callee.name.text}('${p}') writes outside the work directory; use a relative path or testInfo.outputPath()`);
        }
      }
    } else if (ts.isPropertyAssignment(node) && propertyName(node.name) === 'path') {
      // { path: '/etc/x' } in page.screenshot(), page.pdf(), context.storageState(), tracing.stop()...
      const p = literalText(node.initializer);
      if (p !== null && isEscapingPath(p)) {
        finding(node, 'write-outside-workdir', `path '${p}' is outside the work directory; use a relative path or testInfo.outputPath()`);
      }
    }
    checkEscapes(node);
    ts.forEachChild(node, visit);
  }

  const checkEscapes = escapeChecker(source, finding);

  function propertyName(name) {
    if (ts.isIdentifier(name) || ts.isStringLiteral(name)) return name.text;
    return null;
  }

  visit(source);

  // What the script does with each imported module: fs.readFileSync(...) or a named readFileSync(...).
  function visitUses(node) {
    if (ts.isPropertyAccessExpression(node) && ts.isIdentifier(node.expression)) {
      const bound = bindings.get(node.expression.text);
      if (bound && bound.member === null) {
        bound.entry.uses.push({ member: node.name.text, expression: `${node.expression.text}.${node.name.text}`, ...position(node) });
      }
    } else if (ts.isCallExpression(node) && ts.isIdentifier(node.expression)) {
      const bound = bindings.get(node.expression.text);
      if (bound && bound.member !== null) {
        bound.entry.uses.push({ member: bound.member, expression: node.expression.text, ...position(node) });
      }
    }
    ts.forEachChild(node, visitUses);
  }
  visitUses(source);

  // A default export, for k6 (Playwright specs don't need one): export default ..., or export { x as default }.
  const hasDefaultExport = source.statements.some((s) =>
    ts.isExportAssignment(s) ||
    (ts.canHaveModifiers(s) && (ts.getModifiers(s) || []).some((m) => m.kind === ts.SyntaxKind.DefaultKeyword)) ||
    (ts.isExportDeclaration(s) && s.exportClause && ts.isNamedExports(s.exportClause) &&
      s.exportClause.elements.some((e) => e.name.text === 'default')));


  // k6's handleSummary: the files it returns ({ 'summary.json': ..., stdout: ... }), as far as the
  // source spells them: keys of the object literals it returns (directly, or through a variable it
  // returns) and of `out['x.json'] = ...` assignments. A template key is reported by its literal head,
  // with `prefix: true` (`/results/${name}.json` -> '/results/'). Computed names are not seen.
  function keyText(name) {
    if (!name) return null;
    if (ts.isIdentifier(name) || ts.isStringLiteral(name) || ts.isNoSubstitutionTemplateLiteral(name) ||
        ts.isNumericLiteral(name)) return { path: name.text, prefix: false };
    if (ts.isComputedPropertyName(name)) return keyText(name.expression);
    if (ts.isTemplateExpression(name)) return { path: name.head.text, prefix: true };
    return null;
  }

  function unwrap(node) {
    while (node && (ts.isParenthesizedExpression(node) || ts.isAsExpression(node) || ts.isSatisfiesExpression?.(node))) {
      node = node.expression;
    }
    return node;
  }

  function isFunctionLike(node) {
    node = unwrap(node);
    return node && (ts.isArrowFunction(node) || ts.isFunctionExpression(node));
  }

  function handleSummaryBodies() {
    const exported = new Set();  // local names exported as handleSummary
    const functions = new Map(); // local name -> function node
    for (const s of source.statements) {
      const isExported = ts.canHaveModifiers(s) && (ts.getModifiers(s) || []).some((m) => m.kind === ts.SyntaxKind.ExportKeyword);
      if (ts.isFunctionDeclaration(s) && s.name) {
        functions.set(s.name.text, s);
        if (isExported && s.name.text === 'handleSummary') exported.add('handleSummary');
      } else if (ts.isVariableStatement(s)) {
        for (const d of s.declarationList.declarations) {
          if (ts.isIdentifier(d.name) && isFunctionLike(d.initializer)) {
            functions.set(d.name.text, unwrap(d.initializer));
            if (isExported && d.name.text === 'handleSummary') exported.add('handleSummary');
          }
        }
      } else if (ts.isExportDeclaration(s) && !s.moduleSpecifier && s.exportClause && ts.isNamedExports(s.exportClause)) {
        for (const e of s.exportClause.elements) {
          if (e.name.text === 'handleSummary') exported.add((e.propertyName || e.name).text);
        }
      }
    }
    return [...exported].map((name) => functions.get(name)).filter(Boolean);
  }

  function summaryPaths() {
    const paths = [];
    const add = (name) => {
      const key = keyText(name);
      if (key) paths.push({ ...key, ...position(name) });
    };
    const addObject = (node) => {
      node = unwrap(node);
      if (node && ts.isObjectLiteralExpression(node)) {
        for (const p of node.properties) if (p.name) add(p.name);
      }
    };
    for (const fn of handleSummaryBodies()) {
      const returned = new Set();
      const objects = new Map(); // variable -> its object literal
      const walk = (node) => {
        if (ts.isReturnStatement(node) && node.expression) {
          const e = unwrap(node.expression);
          if (ts.isIdentifier(e)) returned.add(e.text); else addObject(e);
        } else if (ts.isVariableDeclaration(node) && ts.isIdentifier(node.name) && node.initializer) {
          objects.set(node.name.text, node.initializer);
        } else if (ts.isBinaryExpression(node) && node.operatorToken.kind === ts.SyntaxKind.EqualsToken &&
                   ts.isElementAccessExpression(node.left)) {
          add(node.left.argumentExpression);
        }
        ts.forEachChild(node, walk);
      };
      if (fn.body && !ts.isBlock(fn.body)) addObject(fn.body); // (data) => ({ ... })
      else if (fn.body) walk(fn.body);
      for (const name of returned) addObject(objects.get(name));
    }
    return paths;
  }

  // k6: the files a script reads (open(path) in the init context, k6/experimental/fs's open(path),
  // k6/net/grpc's client.load(importPaths, ...files) and loadProtoset(path)), as the source spells them:
  // a template by its literal head (prefix: true), a computed path as null.
  function fileReads() {
    const reads = [];
    const pathOf = (node) => {
      const e = unparen(node);
      if (ts.isStringLiteral(e) || ts.isNoSubstitutionTemplateLiteral(e)) return { path: e.text, prefix: false };
      if (ts.isTemplateExpression(e)) return { path: e.head.text, prefix: true };
      return { path: null, prefix: false };
    };
    const add = (call, node) => reads.push({ call, ...pathOf(node), ...position(node) });
    const openers = new Set(['open']); // and its aliases: import { open as fsOpen } from 'k6/experimental/fs'
    const fsModules = new Set(); // import fs from / import * as fs from 'k6/experimental/fs': fs.open(path)
    const aliases = (node) => {
      if (ts.isImportSpecifier(node) && (node.propertyName || node.name).text === 'open') openers.add(node.name.text);
      if (ts.isImportDeclaration(node) && literalText(node.moduleSpecifier) === 'k6/experimental/fs') {
        for (const [local, member] of importClauseBindings(node.importClause)) if (member === null) fsModules.add(local);
      }
      ts.forEachChild(node, aliases);
    };
    aliases(source);
    const walk = (node) => {
      if (ts.isCallExpression(node) && node.arguments.length > 0) {
        const callee = unparen(node.expression);
        const name = ts.isIdentifier(callee) ? callee.text
          : ts.isPropertyAccessExpression(callee) ? callee.name.text : null;
        // open(path), fs.open(path) of k6/experimental/fs; not window.open(url) in a browser test
        const opens = ts.isIdentifier(callee) ? openers.has(name)
          : name === 'open' && ts.isIdentifier(callee.expression) && fsModules.has(callee.expression.text);
        if (opens || name === 'loadProtoset') add(opens ? 'open' : name, node.arguments[0]);
        else if (name === 'load' && ts.isPropertyAccessExpression(callee)) {
          const [dirs, ...protos] = node.arguments;
          const list = unparen(dirs);
          if (ts.isArrayLiteralExpression(list)) list.elements.forEach((e) => add('load', e));
          protos.forEach((e) => add('load', e));
        }
      }
      ts.forEachChild(node, walk);
    };
    walk(source);
    return reads;
  }

  return { syntaxErrors, imports, findings, hasDefaultExport, summaryPaths: summaryPaths(), fileReads: fileReads() };
}

// --- escapes: what reaches past the import check --------------------------------------------------
//
// The import check is only worth something if a script cannot load a module, or build code from a
// string, without an import the check sees. In Node.js the ways round it go through a few objects
// (eval, Function and the constructors of functions, require and module, process, the global
// object, Reflect, the module wrapper's `arguments`) and through Playwright's own power to start
// programs (a browser's executable and command line). The rule is the same for each of those
// objects: it may be used only in the shapes listed here, by names written out in the source.
// Passing it around as a value, or reaching its members by a computed name, is refused, because
// from there on a static check no longer sees what is reached. This is a lint, not a sandbox: code
// that computes a member's name on an ordinary object (`x[k]`) is out of its reach; the pod is the
// boundary (docs/security.md).

// Members of process a test uses; every other one is refused (binding, dlopen, getBuiltinModule...).
const PROCESS_MEMBERS = new Set(['env', 'platform', 'arch', 'version', 'versions', 'cwd', 'hrtime', 'nextTick',
  'uptime', 'memoryUsage', 'cpuUsage', 'stdout', 'stderr', 'pid', 'on', 'once', 'off', 'exitCode',
  'emitWarning']);
// ...and why the well-known ones are refused.
const PROCESS_WHY = {
  binding: 'reaches Node.js internals (native sockets, files, processes) past the import check',
  _linkedBinding: 'reaches Node.js internals past the import check',
  dlopen: 'loads native code',
  mainModule: 'reaches the module loader (process.mainModule.require) past the import check',
  getBuiltinModule: 'loads any built-in module (child_process, fs) past the import check',
  execve: 'replaces the test with another program',
  kill: 'signals other processes',
  chdir: 'changes the directory the runner works in',
  setuid: 'changes the process identity',
  setgid: 'changes the process identity',
  moduleLoadList: 'lists Node.js internals',
  report: 'writes diagnostic reports with the environment in them',
};
const PROCESS_FIX = 'import the modules a test may use by name (import ... from), reach the network with ' +
  'page.request or fetch, and files through Playwright (testInfo.outputPath, download.createReadStream)';
const PROCESS_BY_NAME = 'process.env.NAME, process.platform, process.arch, process.cwd()...';
// Global names that must not be passed around as values (aliased, destructured out of globalThis).
const GUARDED_GLOBALS = new Set(['eval', 'Function', 'Reflect', 'require', 'module', 'process', 'globalThis',
  'global']);
// Built-in constructors whose prototypes the runner's own code and Playwright's share with the test.
const BUILTINS = new Set(['Object', 'Array', 'Function', 'String', 'Number', 'Boolean', 'Symbol', 'BigInt',
  'Promise', 'RegExp', 'Error', 'Map', 'Set', 'WeakMap', 'WeakSet', 'Date', 'ArrayBuffer', 'Uint8Array',
  'Buffer', 'URL', 'JSON', 'Math']);
const TIMERS = new Set(['setTimeout', 'setInterval', 'setImmediate']);
const BROWSER_TYPES = new Set(['chromium', 'firefox', 'webkit', 'browserType']);
const LAUNCHERS = new Set(['launch', 'launchPersistentContext', 'launchServer']);

const HOW_TO_RUN_A_BROWSER = 'use the browser the runner starts (the page, context or browser fixture), or ' +
  'chromium.launch() with options such as headless, slowMo, proxy, args';
// Options (object keys, or names written as strings) that start other programs or leave the pod's browser.
const LAUNCH_OPTIONS = {
  executablePath: 'starts the program it names instead of the runner\'s browser; ' + HOW_TO_RUN_A_BROWSER,
  ignoreDefaultArgs: 'drops the command line the runner\'s browser is started with (its sandboxing and ' +
    'automation flags); leave the defaults and add what you need with args',
  connectOptions: 'drives a browser outside this pod, where the run\'s limits and network rules do not apply; ' +
    HOW_TO_RUN_A_BROWSER,
};
const PLAYWRIGHT_INTERNALS = 'reaches Playwright\'s internal protocol (launching programs, reading and writing ' +
  'files by path), past what is checked here; use Playwright\'s public API';
const CALL_STACK = 'reaches the functions on the call stack and their arguments (the module wrapper\'s hold ' +
  'require), past the import check; pass what a function needs as its arguments';
const MEMBER_REFUSALS = {
  launchServer: 'starts a browser server other programs can connect to; ' + HOW_TO_RUN_A_BROWSER,
  connectOverCDP: 'drives a browser outside this pod, where the run\'s limits and network rules do not apply; ' +
    HOW_TO_RUN_A_BROWSER,
  _electron: 'starts the Electron program it is given; the runner runs web browsers only',
  _android: 'drives Android devices through adb; the runner runs web browsers only',
  getPrototypeOf: 'reaches the prototypes of functions, whose constructor builds code from a string ' +
    '(Object.getPrototypeOf(async function () {}).constructor); use instanceof to test a type',
  setPrototypeOf: 'changes objects the runner\'s and Playwright\'s code rely on; build the object you need instead',
  caller: CALL_STACK,
  arguments: CALL_STACK,
  prepareStackTrace: CALL_STACK,
  _channel: PLAYWRIGHT_INTERNALS,
  _connection: PLAYWRIGHT_INTERNALS,
  _localUtils: PLAYWRIGHT_INTERNALS,
  _wrapApiCall: PLAYWRIGHT_INTERNALS,
  _initializer: PLAYWRIGHT_INTERNALS,
  // (a computed key: a plain `__proto__:` would set the object's prototype instead of a member)
  ['__proto__']: 'reaches and changes prototypes the runner\'s and Playwright\'s code rely on; use instanceof to test ' +
    'a type, and build the object you need instead',
};
// Names refused when written as strings too (Reflect.get(f, 'constructor'), Object.defineProperty(o,
// 'executablePath', ...)); not 'caller' or 'arguments', which are words a page shows.
const STRING_NAMES = new Set(['constructor', ...Object.keys(LAUNCH_OPTIONS), ...Object.keys(MEMBER_REFUSALS)]
  .filter((n) => n !== 'caller' && n !== 'arguments'));
// Chromium switches that make the browser run another program (a command prefix, a launcher, a
// subprocess path), or open its automation port to the network.
const DANGEROUS_SWITCH = /^--?(?:[a-z0-9-]*cmd-prefix|[a-z0-9-]*launcher|browser-subprocess-path|remote-debugging-(?:port|address|socket-name))\b/i;
// Nesting deeper than this is refused before parsing: TypeScript's parser recurses once per level and
// would overflow its stack a few hundred levels further on (the depth a test needs is far lower).
const MAX_NESTING = 256;

function escapeChecker(source, finding) {
  const refuse = (node, rule, message) => finding(node, rule, message);
  // Local names of @playwright/test's browser types: import { chromium as browser } is guarded as chromium is.
  const browserTypes = new Set(BROWSER_TYPES);
  for (const s of source.statements) {
    if (!ts.isImportDeclaration(s) || !ts.isStringLiteral(s.moduleSpecifier) ||
      s.moduleSpecifier.text !== '@playwright/test') continue;
    const named = s.importClause && s.importClause.namedBindings;
    if (named && ts.isNamedImports(named)) {
      for (const el of named.elements) if (BROWSER_TYPES.has((el.propertyName || el.name).text)) browserTypes.add(el.name.text);
    }
  }

  function literalText(node) {
    if (node && (ts.isStringLiteral(node) || ts.isNoSubstitutionTemplateLiteral(node))) return node.text;
    return null;
  }

  // The expression as its parent sees it: through parentheses, `as`, `!` and `satisfies`.
  function outer(node) {
    while (node.parent && (ts.isParenthesizedExpression(node.parent) || ts.isAsExpression(node.parent) ||
      ts.isNonNullExpression(node.parent) || ts.isTypeAssertionExpression(node.parent) ||
      (ts.isSatisfiesExpression && ts.isSatisfiesExpression(node.parent)))) node = node.parent;
    return node;
  }

  // An identifier that reads a variable (not a property name, a declaration or a type).
  function isReference(id) {
    const p = id.parent;
    if (ts.isShorthandPropertyAssignment(p)) return p.name === id; // { eval } reads eval
    if ((ts.isPropertyAccessExpression(p) || ts.isQualifiedName(p)) && p.name === id) return false;
    if (ts.isPartOfTypeNode(id) || ts.isTypeQueryNode(p)) return false;
    return ts.isExpressionNode(id);
  }

  // What is done with `node` (an expression): a member read by name, members destructured, or a
  // use as a value. { kind: 'member', name | computed, access } | { kind: 'destructure', names } | { kind: 'value' }
  function useOf(node) {
    const o = outer(node);
    const p = o.parent;
    if (ts.isPropertyAccessExpression(p) && p.expression === o) {
      return { kind: 'member', name: p.name.text, access: p };
    }
    if (ts.isElementAccessExpression(p) && p.expression === o) {
      const name = literalText(p.argumentExpression);
      return name === null ? { kind: 'member', computed: true, access: p } : { kind: 'member', name, access: p };
    }
    if (ts.isVariableDeclaration(p) && p.initializer === o && ts.isObjectBindingPattern(p.name)) {
      const names = p.name.elements.map((el) => {
        if (el.dotDotDotToken) return null;
        const key = el.propertyName || el.name;
        return ts.isIdentifier(key) || ts.isStringLiteral(key) ? key.text : null;
      });
      return { kind: 'destructure', names };
    }
    return { kind: 'value' };
  }

  function isWriteTarget(node) {
    const o = outer(node);
    const p = o.parent;
    if (ts.isDeleteExpression(p)) return true;
    if ((ts.isPrefixUnaryExpression(p) || ts.isPostfixUnaryExpression(p)) &&
      (p.operator === ts.SyntaxKind.PlusPlusToken || p.operator === ts.SyntaxKind.MinusMinusToken)) return true;
    return ts.isBinaryExpression(p) && p.left === o && ts.isAssignmentOperator(p.operatorToken.kind);
  }

  function isCallee(node) {
    const o = outer(node);
    return (ts.isCallExpression(o.parent) || ts.isNewExpression(o.parent)) && o.parent.expression === o;
  }

  // --- the guarded globals: `name` is used at `node` (an identifier, or globalThis.name) -----------
  function globalUse(name, node, spelled) {
    switch (name) {
      case 'eval':
        return refuse(node, 'eval', `${spelled === name ? '' : `${spelled} is eval: `}eval() runs code built from ` +
          'a string, which cannot be checked before the run; write the code itself');
      case 'Function':
        return refuse(node, 'function-constructor', `${spelled === name ? '' : `${spelled} is Function: `}` +
          'Function() and new Function() build code from a string, which cannot be checked before the run; write ' +
          "a function (() => ...) instead, and test for one with typeof x === 'function'");
      case 'Reflect':
        return refuse(node, 'reflect', `${spelled} reaches members and constructors by computed names, past the ` +
          'check; use the object\'s members by their names');
      case 'require':
        if (spelled === 'require' && isCallee(node)) return; // require('...'): the import check sees it
        return refuse(node, 'require-value', `${spelled} is allowed only as require('module') with the module's ` +
          'name written out: passed around (const r = require; require.call; require.main.require) it loads ' +
          'modules past the import check');
      case 'module': {
        const use = useOf(node);
        if (use.kind === 'member' && use.name === 'exports') return;
        const what = use.kind === 'member' ? `${spelled}.${use.name ?? '[...]'}` : spelled;
        return refuse(node, 'module-internals', `${what} reaches the module loader (module.require, ` +
          'module.constructor._load) past the import check; only module.exports may be used');
      }
      case 'process':
        return processUse(node, spelled);
      case 'globalThis':
      case 'global':
        return globalObjectUse(node, spelled);
      default:
        return undefined;
    }
  }

  function processUse(node, spelled) {
    const use = useOf(node);
    if (use.kind === 'value') {
      return refuse(node, 'process-value', `${spelled} passed around as a value reaches its internals ` +
        `(binding, dlopen, getBuiltinModule) unseen; use its members by name (${PROCESS_BY_NAME})`);
    }
    const names = use.kind === 'member' ? [use.computed ? null : use.name] : use.names;
    for (const name of names) {
      if (name === null) {
        refuse(node, 'process-computed', `${spelled}[...] with a computed name cannot be checked; use ` +
          `its members by name (${PROCESS_BY_NAME})`);
      } else if (name === 'env' && use.kind === 'destructure') {
        refuse(node, 'env-value', `destructuring env out of ${spelled} lets it be changed unseen; read variables ` +
          'as process.env.NAME');
      } else if (!PROCESS_MEMBERS.has(name)) {
        const why = PROCESS_WHY[name] ? `${PROCESS_WHY[name]}; ${PROCESS_FIX}`
          : `is not among the members a test may use (${[...PROCESS_MEMBERS].join(', ')})`;
        refuse(node, 'process-internals', `${spelled}.${name} ${why}`);
      } else if (name === 'env' && use.kind === 'member') {
        envUse(use.access, spelled);
      }
    }
  }

  // process.env: variables are read by name; the object itself is not changed or passed on, because
  // the browser and every program a test starts inherit it (LD_PRELOAD, NODE_OPTIONS, PLAYWRIGHT_*).
  function envUse(env, spelled) {
    const why = 'the browser the test starts inherits the environment (LD_PRELOAD, NODE_OPTIONS would run ' +
      'code in it); keep values of your own in variables, and read the environment as process.env.NAME';
    const o = outer(env);
    const p = o.parent;
    if ((ts.isPropertyAccessExpression(p) || ts.isElementAccessExpression(p)) && p.expression === o) {
      if (isWriteTarget(p)) refuse(p, 'env-write', `changing ${spelled}.env is not allowed: ${why}`);
      return;
    }
    if (ts.isSpreadAssignment(p) || ts.isSpreadElement(p)) return; // a copy
    if (ts.isCallExpression(p) && p.arguments[0] === o && ts.isPropertyAccessExpression(p.expression) &&
      ts.isIdentifier(p.expression.expression) && p.expression.expression.text === 'Object' &&
      ['keys', 'values', 'entries'].includes(p.expression.name.text)) return;
    refuse(env, 'env-value', `${spelled}.env passed around as an object can be changed unseen: ${why}`);
  }

  function globalObjectUse(node, spelled) {
    const use = useOf(node);
    if (use.kind === 'member' && !use.computed) return globalUse(use.name, use.access, `${spelled}.${use.name}`);
    if (use.kind === 'member') {
      return refuse(node, 'global-computed', `${spelled}[...] with a computed name can reach eval, require or ` +
        'process unseen; use the global you need by its name');
    }
    if (use.kind === 'destructure') {
      for (const name of use.names) {
        if (name === null || GUARDED_GLOBALS.has(name)) {
          refuse(node, 'global-destructure', `destructuring ${name ?? '...'} out of ${spelled} aliases it past the ` +
            'check; use the global you need by its name');
        }
      }
      return;
    }
    return refuse(node, 'global-value', `${spelled} passed around as a value reaches eval, require and process ` +
      'by computed names, past the check; use the global you need by its name');
  }

  // --- members that lead out, on any object -------------------------------------------------------
  function memberName(node) {
    if (ts.isPropertyAccessExpression(node)) return node.name.text;
    if (ts.isElementAccessExpression(node)) return literalText(node.argumentExpression);
    return null;
  }

  function constructorRead(node) {
    // x.constructor.name is a type's name (a string); every other read can reach Function.
    const up = outer(node).parent;
    if (ts.isPropertyAccessExpression(up) && up.expression === outer(node) && up.name.text === 'name') return;
    refuse(node, 'function-constructor', '.constructor reaches the constructors of functions, which build code ' +
      'from a string (Object.getPrototypeOf(async function () {}).constructor); use instanceof to test a type, ' +
      'or x.constructor.name for its name');
  }

  function builtinPrototypeWrite(node) {
    // Array.prototype.x = ..., delete Object.prototype.y, Object.defineProperty(String.prototype, ...)
    let top = outer(node);
    while ((ts.isPropertyAccessExpression(top.parent) || ts.isElementAccessExpression(top.parent)) &&
      top.parent.expression === top) top = outer(top.parent);
    const p = top.parent;
    const definer = ts.isCallExpression(p) && p.arguments[0] === top && ts.isPropertyAccessExpression(p.expression) &&
      ['defineProperty', 'defineProperties', 'assign', '__defineGetter__', '__defineSetter__']
        .includes(p.expression.name.text);
    if (isWriteTarget(top) || definer) {
      refuse(node, 'prototype-write', `changing ${node.getText()} changes code the runner and Playwright share ` +
        'with the test (the options a browser is launched with, among others); write a function of your own instead');
    }
  }

  function launchOptions(obj, where) {
    // The options object of chromium.launch() & co., or test.use({ launchOptions }).
    if (!ts.isObjectLiteralExpression(obj)) return;
    for (const prop of obj.properties) {
      if (ts.isSpreadAssignment(prop)) {
        refuse(prop, 'launch-options', `${where}: spread options cannot be checked; write the launch options out`);
        continue;
      }
      if (prop.name && ts.isComputedPropertyName(prop.name) && literalText(prop.name.expression) === null) {
        refuse(prop, 'launch-options', `${where}: an option with a computed name cannot be checked; write its ` +
          'name out');
        continue;
      }
      const key = prop.name && (ts.isIdentifier(prop.name) || ts.isStringLiteral(prop.name)) ? prop.name.text : null;
      if (key === 'env') {
        refuse(prop, 'launch-env', `${where}: env sets the browser's environment (LD_PRELOAD would run code in ` +
          'it); leave it to the runner, and use options such as timezoneId, locale or extraHTTPHeaders');
      } else if (key === 'args' && ts.isPropertyAssignment(prop)) {
        const list = outer(prop.initializer);
        const written = ts.isArrayLiteralExpression(prop.initializer) &&
          prop.initializer.elements.every((e) => literalText(e) !== null);
        if (!written || list !== prop.initializer) {
          refuse(prop, 'launch-args', `${where}: args must be written out as strings, so the switches can be ` +
            "checked (args: ['--lang=de'])");
        }
      }
    }
  }

  function isBrowserType(expr) {
    const e = outer(expr);
    if (ts.isIdentifier(e)) return browserTypes.has(e.text);
    return ts.isPropertyAccessExpression(e) && BROWSER_TYPES.has(e.name.text);
  }

  // chromium & co. are used by their members' names (chromium.launch({...})): passed on, or reached by a
  // computed name, they could launch with options built where the check does not see them.
  function browserTypeUse(node) {
    const use = useOf(node);
    if (use.kind === 'member' && !use.computed) return;
    const what = use.kind === 'member' ? `${node.text}[...] with a computed name` : `${node.text} passed on`;
    refuse(node, 'browser-type', `${what} cannot be checked (its launch options, launchServer); use ` +
      `${node.text}.launch({ ... }) with the options written out, or the browser fixture`);
  }

  function nestingFunction(node) {
    // The nearest function that binds `arguments` (arrows do not), or undefined at the module's level.
    for (let n = node.parent; n; n = n.parent) {
      if (ts.isFunctionLike(n) && !ts.isArrowFunction(n)) return n;
      if (ts.isClassStaticBlockDeclaration && ts.isClassStaticBlockDeclaration(n)) return n;
    }
    return undefined;
  }

  return function check(node) {
    if (ts.isIdentifier(node) && isReference(node)) {
      const name = node.text;
      if (GUARDED_GLOBALS.has(name)) globalUse(name, node, name);
      else if (browserTypes.has(name)) browserTypeUse(node);
      else if (name === 'arguments' && nestingFunction(node) === undefined) {
        refuse(node, 'module-arguments', 'arguments at the top level of a file are the module loader\'s ' +
          '(require among them), reaching past the import check; name what you need');
      }
    }
    if ((ts.isPropertyAccessExpression(node) || ts.isElementAccessExpression(node))) {
      const name = memberName(node);
      if (name === 'constructor') {
        if (memberName(outer(node.expression)) !== 'constructor') constructorRead(node); // once per chain
      } else if (Object.hasOwn(MEMBER_REFUSALS, name)) {
        refuse(node, 'refused-member', `.${name} ${MEMBER_REFUSALS[name]}`);
      } else if (Object.hasOwn(LAUNCH_OPTIONS, name) && isWriteTarget(node)) {
        refuse(node, 'launch-options', `${name} ${LAUNCH_OPTIONS[name]}`);
      } else if (name === 'connect' && isBrowserType(node.expression)) {
        refuse(node, 'browser-connect', `${node.getText()} ${MEMBER_REFUSALS.connectOverCDP}`);
      } else if (name === 'prototype' && ts.isIdentifier(outer(node.expression)) &&
        BUILTINS.has(outer(node.expression).text)) {
        builtinPrototypeWrite(node);
      }
    }
    if ((ts.isPropertyAssignment(node) || ts.isShorthandPropertyAssignment(node) || ts.isMethodDeclaration(node))) {
      const key = ts.isIdentifier(node.name) || ts.isStringLiteral(node.name) ? node.name.text : null;
      if (key !== null && Object.hasOwn(LAUNCH_OPTIONS, key)) {
        refuse(node, 'launch-options', `${key} ${LAUNCH_OPTIONS[key]}`);
      } else if (key === '__proto__' && !ts.isMethodDeclaration(node)) {
        refuse(node, 'refused-member', `__proto__ ${MEMBER_REFUSALS.__proto__}`);
      } else if (key === 'launchOptions' && ts.isPropertyAssignment(node)) {
        if (!ts.isObjectLiteralExpression(node.initializer)) {
          refuse(node, 'launch-options', 'launchOptions must be written out as an object, so they can be checked');
        } else launchOptions(node.initializer, 'launchOptions');
      }
    }
    if (ts.isBindingElement(node)) {
      const key = node.propertyName || node.name;
      const name = ts.isIdentifier(key) || ts.isStringLiteral(key) ? key.text : null;
      if (name === 'constructor') constructorRead(node);
      else if (Object.hasOwn(MEMBER_REFUSALS, name)) refuse(node, 'refused-member', `${name} ${MEMBER_REFUSALS[name]}`);
    }
    if (ts.isImportSpecifier(node)) {
      const name = (node.propertyName || node.name).text;
      if (Object.hasOwn(MEMBER_REFUSALS, name)) refuse(node, 'refused-member', `${name} ${MEMBER_REFUSALS[name]}`);
    }
    if (ts.isStringLiteral(node) || ts.isNoSubstitutionTemplateLiteral(node) || ts.isTemplateHead(node)) {
      const text = node.text;
      const p = node.parent;
      // A test's title may say 'constructor': test('constructor', ...), test.describe(...), test.step(...).
      const callee = ts.isCallExpression(p) && p.arguments[0] === node ? outer(p.expression) : null;
      const isTitle = callee !== null && ['test', 'describe', 'step', 'it'].includes(
        ts.isIdentifier(callee) ? callee.text : ts.isPropertyAccessExpression(callee) ? callee.name.text : '');
      const isKeyOrMember = isTitle || (ts.isPropertyAssignment(p) && p.name === node) ||
        (ts.isElementAccessExpression(p) && p.argumentExpression === node) ||
        ts.isImportDeclaration(p) || ts.isExportDeclaration(p) || ts.isExternalModuleReference(p);
      if (DANGEROUS_SWITCH.test(text)) {
        const does = /remote-debugging/i.test(text) ? 'opens the browser\'s automation port to the network'
          : 'makes the browser start another program';
        refuse(node, 'browser-switch', `the browser switch '${text.split('=')[0]}' ${does}; the runner's ` +
          'browser runs with the switches it needs: add only ones that change what the page sees (--lang, ' +
          '--window-size, --proxy-server...)');
      } else if (!isKeyOrMember && STRING_NAMES.has(text)) {
        // The name written as a string (Reflect.get(x, 'constructor'), Object.defineProperty(o, 'executablePath'))
        // reaches the same member as writing it out.
        const why = text === 'constructor' ? 'names the constructors of functions, which build code from a string'
          : `names ${text}, which ${(LAUNCH_OPTIONS[text] || MEMBER_REFUSALS[text]).split(';')[0]}`;
        refuse(node, 'refused-name', `the string '${text}' ${why}; use the object's members by their names`);
      }
    }
    if (ts.isCallExpression(node)) {
      const callee = outer(node.expression);
      if (ts.isPropertyAccessExpression(callee) && LAUNCHERS.has(callee.name.text)) {
        const where = `${callee.getText()}()`;
        const opts = callee.name.text === 'launchPersistentContext' ? node.arguments[1] : node.arguments[0];
        if (opts && isBrowserType(callee.expression) && !ts.isObjectLiteralExpression(outer(opts))) {
          refuse(opts, 'launch-options', `${where}: the launch options must be written out as an object in the ` +
            'call, so they can be checked');
        } else if (opts) launchOptions(opts, where);
      }
      if (ts.isIdentifier(callee) && TIMERS.has(callee.text) && node.arguments[0] &&
        (ts.isStringLiteral(node.arguments[0]) || ts.isTemplateLiteral(node.arguments[0]))) {
        refuse(node, 'timer-string', `${callee.text}() with a string runs code built from a string; pass a ` +
          'function (() => ...)');
      }
    }
    if (ts.isWithStatement(node)) {
      refuse(node, 'with', 'with hides which names the code in it reaches (with (process) binding(...)); ' +
        'use the object\'s members by their names');
    }
  };
}


// --- nesting: refused before the parser recurses into it -------------------------------------------

// The deepest point of the brackets ( [ { and ${ } in the text, counted by TypeScript's scanner (which
// does not recurse): { line, column } where it first goes over MAX_NESTING, else null.
function tooDeep(text, file) {
  const variant = /\.[jt]sx$/.test(file) ? ts.LanguageVariant.JSX : ts.LanguageVariant.Standard;
  const scanner = ts.createScanner(ts.ScriptTarget.Latest, true, variant, text);
  const K = ts.SyntaxKind;
  const ends = new Set([K.Identifier, K.NumericLiteral, K.BigIntLiteral, K.StringLiteral, K.CloseParenToken,
    K.CloseBracketToken, K.CloseBraceToken, K.ThisKeyword, K.SuperKeyword, K.TrueKeyword, K.FalseKeyword,
    K.NullKeyword, K.NoSubstitutionTemplateLiteral, K.TemplateTail, K.RegularExpressionLiteral]);
  const open = []; // 'b' for a bracket, 't' for a template's ${
  let previous = K.Unknown;
  for (let token = scanner.scan(); token !== K.EndOfFileToken; token = scanner.scan()) {
    if ((token === K.SlashToken || token === K.SlashEqualsToken) && !ends.has(previous)) {
      token = scanner.reScanSlashToken(); // a regular expression, not a division
    }
    if (token === K.OpenParenToken || token === K.OpenBracketToken || token === K.OpenBraceToken) open.push('b');
    else if (token === K.TemplateHead) open.push('t');
    else if (token === K.CloseBraceToken && open[open.length - 1] === 't') {
      token = scanner.reScanTemplateToken(false);
      if (token === K.TemplateTail) open.pop();
    } else if (token === K.CloseParenToken || token === K.CloseBracketToken || token === K.CloseBraceToken) open.pop();
    if (open.length > MAX_NESTING) {
      const at = lineAndColumn(text, scanner.getTokenStart ? scanner.getTokenStart() : scanner.getTokenPos());
      return at;
    }
    previous = token;
  }
  return null;
}

function lineAndColumn(text, offset) {
  let line = 1;
  let start = 0;
  for (let i = text.indexOf('\n'); i !== -1 && i < offset; i = text.indexOf('\n', i + 1)) {
    line += 1;
    start = i + 1;
  }
  return { line, column: offset - start + 1 };
}

// facts(), or, for a file nested too deeply to parse, only that: the script's fault, said as such,
// not a crash of the validator (which the runner would take for its own failure and retry).
function guardedFacts(file) {
  const empty = { syntaxErrors: [], imports: [], findings: [], hasDefaultExport: false, summaryPaths: [], fileReads: [] };
  const deep = tooDeep(fs.readFileSync(file, 'utf8'), file);
  if (deep) return { ...empty, tooDeep: { ...deep, limit: MAX_NESTING } };
  try {
    return facts(file);
  } catch (error) {
    if (!(error instanceof RangeError)) throw error;
    // Deep without brackets (!!!!...x, a => a => ...): the parser's stack ran out.
    return { ...empty, tooDeep: { line: null, column: null, limit: MAX_NESTING } };
  }
}

// Last, once every constant above (the constants of the escape rules among them) is defined.
for (const file of files) process.stdout.write(JSON.stringify(guardedFacts(file)) + '\n');
writeCache(typescript);
