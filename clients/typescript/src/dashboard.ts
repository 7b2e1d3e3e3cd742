// How a dashboard talks to Trellis with the generated documents: queries and mutations
// over HTTP (POST /graphql), subscriptions over graphql-ws (/graphql/ws).
import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import { print, type FormattedExecutionResult, type GraphQLFormattedError } from 'graphql';
import { createClient, type Client } from 'graphql-ws';

import { documentIds } from './generated/document-ids.js';
import { CancelRunDocument, RunDetailDocument, RunUpdatedDocument, StartRunDocument } from './generated/documents.js';
import type {
  CancelRunMutation,
  RunDetailQuery,
  RunUpdatedSubscription,
  RunUpdatedSubscriptionVariables,
  StartRunMutation,
  StartRunMutationVariables,
} from './generated/operations.js';

/** The part of `fetch` this needs: `window.fetch`, Node's `fetch` or a test double. */
export type FetchLike = (
  url: string,
  init: { method: 'POST'; headers: Record<string, string>; body: string },
) => Promise<{ ok: boolean; status: number; json(): Promise<unknown> }>;

/** A response with GraphQL errors (`extensions.code`: UNAUTHENTICATED, FORBIDDEN, NOT_FOUND, …). */
export class TrellisError extends Error {
  constructor(
    readonly status: number,
    readonly errors: readonly GraphQLFormattedError[],
  ) {
    super(errors.map((e) => e.message).join('; ') || `HTTP ${status}`);
    this.name = 'TrellisError';
  }

  /** The first error's `extensions.code`, if any. */
  get code(): string | undefined {
    const code = this.errors[0]?.extensions?.['code'];
    return typeof code === 'string' ? code : undefined;
  }
}

/** The errors that mean "send the document's text instead of its id". */
const SEND_TEXT = new Set(['PERSISTED_QUERY_NOT_FOUND', 'PERSISTED_QUERY_NOT_SUPPORTED']);

/**
 * Posts one typed operation to `${baseUrl}/graphql` and returns its typed `data`.
 * The operation goes by its trusted-document id (`documentId`, see
 * `generated/persisted-documents.json`), and by its text only when the server has no
 * such manifest. Throws `TrellisError` on any GraphQL error: the server rolls the whole
 * request back then, so partial data is not worth keeping.
 */
export async function request<TData, TVariables extends Record<string, unknown>>(
  fetch: FetchLike,
  accessToken: string,
  document: TypedDocumentNode<TData, TVariables>,
  variables: NoInfer<TVariables>,
  baseUrl = '',
): Promise<TData> {
  const post = async (operation: { documentId: string } | { query: string }) => {
    const response = await fetch(`${baseUrl}/graphql`, {
      method: 'POST',
      headers: {
        'Content-Type': 'application/json',
        Accept: 'application/json',
        Authorization: `Bearer ${accessToken}`,
      },
      body: JSON.stringify({ ...operation, variables }),
    });
    // A GraphQL response, whose `data` matches `document`; or, for a body the server
    // refused (HTTP 400, 408, 413), plain text: then only the status is reported.
    const result = (await response.json().catch(() => ({}))) as FormattedExecutionResult<TData>;
    return { status: response.status, result };
  };
  const documentId = documentIds.get(document);
  let { status, result } = documentId ? await post({ documentId }) : await post({ query: print(document) });
  const code = result.errors?.[0]?.extensions?.['code'];
  if (documentId && typeof code === 'string' && SEND_TEXT.has(code)) {
    ({ status, result } = await post({ query: print(document) }));
  }
  if (result.errors?.length || result.data == null) {
    throw new TrellisError(status, result.errors ?? []);
  }
  return result.data;
}

/** The run in `RunDetail`: the `node` union narrowed to `WorkflowRun`. */
export type RunDetail = Extract<RunDetailQuery['node'], { __typename: 'WorkflowRun' }>;

/**
 * A run with its step runs and the first page of its log. Null when the ID names another
 * kind of object; a `TrellisError` with code NOT_FOUND when it names nothing visible.
 */
export async function loadRun(fetch: FetchLike, accessToken: string, id: string): Promise<RunDetail | null> {
  const { node } = await request(fetch, accessToken, RunDetailDocument, { id, logsFirst: 100 });
  return node.__typename === 'WorkflowRun' ? node : null;
}

/** Starts a run. Problems with the input come back in `userErrors`, not as a throw. */
export async function startRun(
  fetch: FetchLike,
  accessToken: string,
  input: StartRunMutationVariables['input'],
): Promise<StartRunMutation['startRun']> {
  return (await request(fetch, accessToken, StartRunDocument, { input })).startRun;
}

export async function cancelRun(
  fetch: FetchLike,
  accessToken: string,
  id: string,
): Promise<CancelRunMutation['cancelRun']> {
  return (await request(fetch, accessToken, CancelRunDocument, { input: { id } })).cancelRun;
}

/**
 * A graphql-ws client for `wss://…/graphql/ws`. The token is read on every (re)connect:
 * when an access token expires the server closes the socket with 4403 and graphql-ws
 * reconnects, so return a fresh one.
 */
export function connect(url: string, getAccessToken: () => string | Promise<string>): Client {
  return createClient({
    url,
    connectionParams: async () => ({ Authorization: `Bearer ${await getAccessToken()}` }),
  });
}

/**
 * Follows one run: `onRun` gets it as it is now, then after every change. Returns the
 * function that stops following it.
 */
export function watchRun(
  client: Client,
  runId: string,
  onRun: (run: RunUpdatedSubscription['runUpdated']) => void,
  onError: (error: unknown) => void,
): () => void {
  const variables: RunUpdatedSubscriptionVariables = { runId };
  return client.subscribe<RunUpdatedSubscription>(
    { query: print(RunUpdatedDocument), variables },
    {
      next: (result) => {
        if (result.errors?.length) onError(new TrellisError(200, result.errors));
        else if (result.data) onRun(result.data.runUpdated);
      },
      error: onError,
      complete: () => {},
    },
  );
}
