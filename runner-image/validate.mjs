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
//     "summaryPaths": [{path, prefix, line, column}] }       k6: the files handleSummary returns, as spelled
//
// This script only reports what it sees; the *decision* (which modules are allowed, how the
// message reads) is made in Python, where it is unit-tested and configurable. Lines and columns
// are 1-based, as an editor shows them.
//
// TypeScript's own parser is used because it reads both TypeScript and JavaScript (a .js spec
// is parsed as TSX-free TypeScript, a superset), and reports syntax errors with positions.

import fs from 'node:fs';
import path from 'node:path';
import ts from 'typescript';

const files = process.argv.slice(2);
if (files.length === 0) {
  process.stderr.write('usage: node validate.mjs <file>...\n');
  process.exit(2);
}
for (const file of files) process.stdout.write(JSON.stringify(facts(file)) + '\n');

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

  function finding(node, rule, message) {
    findings.push({ ...position(node), rule, message });
  }

  function literalText(node) {
    if (node && (ts.isStringLiteral(node) || ts.isNoSubstitutionTemplateLiteral(node))) return node.text;
    return null;
  }

  // process.binding & co. reach native internals (raw sockets, file descriptors) past any import check.
  const PROCESS_ESCAPES = new Set(['binding', '_linkedBinding', 'dlopen', 'mainModule']);
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
      } else if (ts.isIdentifier(callee) && callee.text === 'require') {
        const spec = literalText(arg);
        if (spec === null) finding(node, 'dynamic-require', 'require() with a computed module name cannot be checked; use a string literal');
        else addImport(spec, node, 'require', requireBindings(node));
      } else if (ts.isIdentifier(callee) && callee.text === 'eval') {
        finding(node, 'eval', 'eval() runs code that cannot be checked before the run');
      } else if (ts.isIdentifier(callee) && callee.text === 'Function') {
        finding(node, 'function-constructor', 'Function() builds code from a string that cannot be checked before the run');
      } else if (ts.isPropertyAccessExpression(callee) && PATH_WRITERS.has(callee.name.text)) {
        const p = literalText(arg);
        if (p !== null && isEscapingPath(p)) {
          finding(node, 'write-outside-workdir', `${callee.name.text}('${p}') writes outside the work directory; use a relative path or testInfo.outputPath()`);
        }
      }
    } else if (ts.isNewExpression(node) && ts.isIdentifier(node.expression) && node.expression.text === 'Function') {
      finding(node, 'function-constructor', 'new Function() builds code from a string that cannot be checked before the run');
    } else if (ts.isPropertyAccessExpression(node)) {
      const obj = node.expression;
      const name = node.name.text;
      if (ts.isIdentifier(obj) && obj.text === 'process' && PROCESS_ESCAPES.has(name)) {
        finding(node, 'process-internals', `process.${name} reaches Node.js internals and is not allowed`);
      } else if (ts.isIdentifier(obj) && obj.text === 'module' && (name === 'require' || name === 'constructor')) {
        finding(node, 'module-internals', `module.${name} loads modules past the import check and is not allowed`);
      } else if (name === 'constructor' && ts.isPropertyAccessExpression(obj) && obj.name.text === 'constructor') {
        finding(node, 'function-constructor', '.constructor.constructor reaches the Function constructor and is not allowed');
      }
    } else if (ts.isPropertyAssignment(node) && propertyName(node.name) === 'path') {
      // { path: '/etc/x' } in page.screenshot(), page.pdf(), context.storageState(), tracing.stop()...
      const p = literalText(node.initializer);
      if (p !== null && isEscapingPath(p)) {
        finding(node, 'write-outside-workdir', `path '${p}' is outside the work directory; use a relative path or testInfo.outputPath()`);
      }
    }
    ts.forEachChild(node, visit);
  }

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

  return { syntaxErrors, imports, findings, hasDefaultExport, summaryPaths: summaryPaths() };
}
