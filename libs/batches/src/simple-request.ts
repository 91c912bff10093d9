import type { Signature } from './canvas/signature.js';

export interface DeliveryInfo {
  exchange: string;
  routingKey: string;
  redelivered: boolean;
  priority: number | null;
  /** True when the request runs in-process through `apply()` or eager mode. */
  isEager: boolean;
}

export type TaskArgs = readonly unknown[];
export type TaskKwargs = Record<string, unknown>;

export interface SimpleRequestFields<Args extends TaskArgs = TaskArgs, Kwargs extends TaskKwargs = TaskKwargs> {
  id: string;
  name: string;
  args: Args;
  kwargs: Kwargs;
  deliveryInfo: DeliveryInfo;
  hostname: string;
  replyTo: string | null;
  correlationId: string;
  ignoreResult: boolean;
  retries: number;
  eta: Date | null;
  expires: Date | null;
  headers: Readonly<Record<string, unknown>>;
  callbacks?: readonly Signature[];
  errbacks?: readonly Signature[];
  chain?: readonly Signature[];
  chord?: Signature | null;
  group?: string | null;
  groupIndex?: number | null;
  parentId?: string | null;
  rootId?: string | null;
}

const NONE: readonly Signature[] = Object.freeze([]);

/** One task request in a batch: what celery-batches' `SimpleRequest` holds, plus Celery's header data. */
export class SimpleRequest<Args extends TaskArgs = TaskArgs, Kwargs extends TaskKwargs = TaskKwargs> implements SimpleRequestFields<
  Args,
  Kwargs
> {
  /** Task id; results are stored under it. */
  readonly id: string;
  /** Task name (Celery's `task` header). */
  readonly name: string;
  readonly args: Args;
  readonly kwargs: Kwargs;
  readonly deliveryInfo: DeliveryInfo;
  /** Name of the worker node running the request. */
  readonly hostname: string;
  readonly replyTo: string | null;
  readonly correlationId: string;
  /** The sender asked for no result to be stored. */
  readonly ignoreResult: boolean;
  /** Times this request has been retried before. */
  readonly retries: number;
  readonly eta: Date | null;
  readonly expires: Date | null;
  /** Every header of the original message. */
  readonly headers: Readonly<Record<string, unknown>>;
  /** Signatures sent with this request's result once it succeeds (Celery's `link`). */
  readonly callbacks: readonly Signature[];
  /** Signatures sent with this request's id once it fails for good (Celery's `link_error`). */
  readonly errbacks: readonly Signature[];
  /** The rest of its chain, in Celery's order: the next task is the last element. */
  readonly chain: readonly Signature[];
  /** The body of the chord this request is a header task of. */
  readonly chord: Signature | null;
  /** Id of the group (or chord header) it belongs to, and its place in it. */
  readonly group: string | null;
  readonly groupIndex: number | null;
  /** The task that sent it, and the first task of its workflow. */
  readonly parentId: string | null;
  readonly rootId: string | null;

  constructor(fields: SimpleRequestFields<Args, Kwargs>) {
    this.id = fields.id;
    this.name = fields.name;
    this.args = fields.args;
    this.kwargs = fields.kwargs;
    this.deliveryInfo = fields.deliveryInfo;
    this.hostname = fields.hostname;
    this.replyTo = fields.replyTo;
    this.correlationId = fields.correlationId;
    this.ignoreResult = fields.ignoreResult;
    this.retries = fields.retries;
    this.eta = fields.eta;
    this.expires = fields.expires;
    this.headers = fields.headers;
    this.callbacks = fields.callbacks ?? NONE;
    this.errbacks = fields.errbacks ?? NONE;
    this.chain = fields.chain ?? NONE;
    this.chord = fields.chord ?? null;
    this.group = fields.group ?? null;
    this.groupIndex = fields.groupIndex ?? null;
    this.parentId = fields.parentId ?? null;
    this.rootId = fields.rootId ?? null;
  }
}
