// The `code`s berth's problem documents can carry, read from the server's source with the
// TypeScript compiler: the OpenAPI document types `code` as any string, and a client wants
// a closed union to narrow on. A code counts when it is
//   - the first argument of `problems.<kind>(code, …)`,
//   - the `code` of an object literal that also has a `status` or a `title` (an HttpProblem
//     or a problem body),
//   - returned by `clientErrorCode` (Fastify's own errors mapped to codes).
// Either branch of a `cond ? 'a' : 'b'` counts.
import fs from 'node:fs';
import path from 'node:path';
import ts from 'typescript';

const CODE = /^[a-z][a-z0-9_]*$/;

function literals(expr: ts.Expression | undefined): string[] {
  if (!expr) return [];
  if (ts.isStringLiteralLike(expr)) return [expr.text];
  if (ts.isParenthesizedExpression(expr)) return literals(expr.expression);
  if (ts.isConditionalExpression(expr)) return [...literals(expr.whenTrue), ...literals(expr.whenFalse)];
  return [];
}

function propertyName(p: ts.ObjectLiteralElementLike): string | undefined {
  return p.name && (ts.isIdentifier(p.name) || ts.isStringLiteral(p.name)) ? p.name.text : undefined;
}

function codesIn(file: ts.SourceFile): string[] {
  const found: string[] = [];
  const visit = (node: ts.Node, inCodeMapper: boolean) => {
    if (
      ts.isCallExpression(node) &&
      ts.isPropertyAccessExpression(node.expression) &&
      ts.isIdentifier(node.expression.expression) &&
      node.expression.expression.text === 'problems'
    ) {
      found.push(...literals(node.arguments[0]));
    }
    if (ts.isObjectLiteralExpression(node)) {
      const names = new Set(node.properties.map(propertyName));
      const code = node.properties.find((p) => propertyName(p) === 'code');
      if (code && ts.isPropertyAssignment(code) && (names.has('status') || names.has('title'))) found.push(...literals(code.initializer));
    }
    if (inCodeMapper && ts.isReturnStatement(node)) found.push(...literals(node.expression));
    const mapper = ts.isFunctionDeclaration(node) && node.name?.text === 'clientErrorCode';
    ts.forEachChild(node, (child) => visit(child, inCodeMapper || mapper));
  };
  visit(file, false);
  return found.filter((c) => CODE.test(c));
}

function sourceFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return entry.name === 'generated' ? [] : sourceFiles(full);
    return entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts') ? [full] : [];
  });
}

/** Every problem code in the server's source (`src/`), sorted, each once. */
export function problemCodes(srcDir: string): string[] {
  const codes = new Set<string>();
  for (const file of sourceFiles(srcDir)) {
    const source = ts.createSourceFile(file, fs.readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
    for (const code of codesIn(source)) codes.add(code);
  }
  return [...codes].sort();
}
