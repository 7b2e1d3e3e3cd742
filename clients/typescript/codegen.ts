import type { CodegenConfig } from '@graphql-codegen/cli';

// Three outputs, one plugin each, so no type name is ever declared twice:
//   schema.ts      every schema type (`typescript`)
//   operations.ts  result and variables types of operations/*.graphql (`typescript-operations`),
//                  referring to schema.ts as `Types.*`
//   documents.ts   one TypedDocumentNode per operation (`typed-document-node`),
//                  referring to operations.ts as `Types.*`
// Run by `npm run check` (and so by `just test`); the output is not committed.
const documents = 'operations/**/*.graphql';

const config: CodegenConfig = {
  overwrite: true,
  schema: '../../schema.graphql',
  config: {
    // Every custom scalar of schema.graphql must be mapped here: codegen fails otherwise.
    strictScalars: true,
    scalars: {
      ID: 'string',
      // RFC 3339, UTC (`2026-01-31T12:00:00Z`).
      DateTime: 'string',
      JSON: '../scalars.js#JsonValue',
    },
    // String-literal unions: the generated code is types only (no runtime enum objects),
    // and the strings a response carries are assignable without casts.
    enumsAsTypes: true,
    useTypeImports: true,
    // Result fields are always present (a nullable one is `T | null`, not optional);
    // nullable variables and input fields, and those with a default, stay optional.
    avoidOptionals: { field: true },
    skipTypename: true,
  },
  generates: {
    'src/generated/schema.ts': {
      plugins: ['typescript'],
    },
    'src/generated/operations.ts': {
      documents,
      plugins: [
        {
          add: {
            // Results name mapped scalars by their TypeScript type (pre-resolved).
            content: [
              "import type * as Types from './schema.js';",
              "import type { JsonValue } from '../scalars.js';",
              'export type { JsonValue };',
            ],
          },
        },
        'typescript-operations',
      ],
      config: { namespacedImportName: 'Types' },
    },
    'src/generated/documents.ts': {
      documents,
      plugins: [{ add: { content: "import type * as Types from './operations.js';" } }, 'typed-document-node'],
      config: { importOperationTypesFrom: './operations.js' },
    },
  },
};

export default config;
