// The examples of the README section "Testing your batch handlers": each case is one copyable
// recipe for testing batch handlers with @nestjs/testing, all on the embedded memory:// broker.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Injectable, Module } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import {
  BATCHES_BROKER,
  BatchClient,
  BatchesModule,
  BatchesServer,
  BatchHandler,
  MemoryBroker,
  MemoryResultBackend,
  ResultBackend,
  TaskFailedError,
  type SimpleRequest,
} from 'nestjs-batches';

// ---- The code under test: what a user's app would contain. ----

/** A dependency that is expensive per call and cheap per item: it looks up many SKUs at once. */
@Injectable()
class Catalog {
  private readonly prices = new Map([
    ['apple', 120],
    ['pear', 90],
    ['plum', 45],
  ]);

  async priceMany(skus: readonly string[]): Promise<number[]> {
    return skus.map((sku) => {
      const price = this.prices.get(sku);
      if (price === undefined) throw new Error(`unknown SKU ${sku}`);
      return price;
    });
  }
}

@Injectable()
class PriceHandler {
  constructor(private readonly catalog: Catalog) {}

  // One catalog call per batch of up to 5; the returned array is each request's result.
  @BatchHandler('price', { flushEvery: 5, flushInterval: 60_000 })
  price(requests: SimpleRequest<[string]>[]): Promise<number[]> {
    return this.catalog.priceMany(requests.map((request) => request.args[0]));
  }
}

/** A service that sends tasks and reads their results. */
@Injectable()
class Quotes {
  constructor(private readonly batches: BatchClient) {}

  async total(skus: string[]): Promise<number> {
    const sent = await Promise.all(skus.map((sku) => this.batches.delay<number>('price', sku)));
    const prices = await Promise.all(sent.map((result) => result.get({ timeout: 10_000 })));
    return prices.reduce((sum, price) => sum + price, 0);
  }
}

/** The app's module, configured for production. */
@Module({
  imports: [BatchesModule.forRoot({ broker: 'amqp://guest:guest@rabbitmq:5672', resultBackend: 'redis://redis:6379/0' })],
  providers: [Catalog, PriceHandler, Quotes],
})
class AppModule {}

// ---- The tests. ----

describe('testing batch handlers with @nestjs/testing', () => {
  it('apply() runs the handler in-process and returns its outcome', async (t) => {
    const moduleRef = await Test.createTestingModule({
      imports: [BatchesModule.forRoot()],
      providers: [Catalog, PriceHandler],
    }).compile();
    t.after(() => moduleRef.close());
    const client = moduleRef.get(BatchClient);

    const apple = await client.apply('price', { args: ['apple'] });
    assert.equal(apple.state, 'SUCCESS');
    assert.equal(apple.result, 120);
    assert.equal(await apple.get(), 120);

    const durian = await client.apply('price', { args: ['durian'] });
    assert.equal(durian.state, 'FAILURE');
    assert.deepEqual(durian.result, { exc_type: 'Error', exc_message: ['unknown SKU durian'], exc_module: 'nestjs_batches' });
    await assert.rejects(durian.get(), TaskFailedError);
  });

  it('forRoot({ eager: true }) makes delay() run the handler in-process', async (t) => {
    const moduleRef = await Test.createTestingModule({
      imports: [BatchesModule.forRoot({ eager: true })],
      providers: [Catalog, PriceHandler, Quotes],
    }).compile();
    t.after(() => moduleRef.close());

    const pear = await moduleRef.get(BatchClient).delay<number>('price', 'pear');
    assert.equal(await pear.get(), 90);
    // A service that sends tasks and waits for their results, tested end to end without a worker.
    assert.equal(await moduleRef.get(Quotes).total(['apple', 'pear']), 210);
  });

  it('overrideProvider(BatchClient) unit-tests a service that sends tasks', async (t) => {
    const delay = t.mock.fn(async (_task: string, _sku: string) => ({ get: async () => 100 }));
    const moduleRef = await Test.createTestingModule({
      imports: [BatchesModule.forRoot()],
      providers: [Quotes],
    })
      .overrideProvider(BatchClient)
      .useValue({ delay })
      .compile();
    t.after(() => moduleRef.close());

    assert.equal(await moduleRef.get(Quotes).total(['apple', 'pear']), 200);
    assert.deepEqual(
      delay.mock.calls.map((call) => call.arguments),
      [
        ['price', 'apple'],
        ['price', 'pear'],
      ],
    );
  });

  it('overrideProvider(BATCHES_BROKER / ResultBackend) runs a production module in memory', async (t) => {
    const results = new MemoryResultBackend(60_000);
    const moduleRef = await Test.createTestingModule({ imports: [AppModule] })
      .overrideProvider(BATCHES_BROKER)
      .useValue(new MemoryBroker())
      .overrideProvider(ResultBackend)
      .useValue(results)
      .compile();
    // A worker-only app: no HTTP adapter needed.
    const app = moduleRef.createNestMicroservice({ strategy: moduleRef.get(BatchesServer) });
    t.after(() => app.close());
    await app.listen();

    assert.ok(app.get(BatchesServer).unwrap() instanceof MemoryBroker);
    assert.equal(app.get(ResultBackend), results);

    // 5 SKUs fill one batch (flushEvery: 5); the worker stores their prices in `results`.
    const sent = await Promise.all(['apple', 'pear', 'plum', 'apple', 'pear'].map((sku) => app.get(BatchClient).delay('price', sku)));
    const stored = await Promise.all(sent.map((result) => results.waitForResult(result.id, { timeout: 5_000 })));
    assert.deepEqual(stored, [120, 90, 45, 120, 90]);
  });

  it('a worker on memory:// batches what BatchClient sends', async (t) => {
    const moduleRef = await Test.createTestingModule({
      imports: [BatchesModule.forRoot()],
      providers: [Catalog, PriceHandler],
    }).compile();
    const app = moduleRef.createNestApplication();
    t.after(() => app.close());
    app.connectMicroservice({ strategy: app.get(BatchesServer) });
    await app.startAllMicroservices();
    await app.init();
    const priceMany = t.mock.method(app.get(Catalog), 'priceMany');

    const client = app.get(BatchClient);
    const skus = ['apple', 'pear', 'plum', 'apple', 'pear', 'plum', 'apple', 'pear', 'plum', 'apple'];
    const sent = await Promise.all(skus.map((sku) => client.delay<number>('price', sku)));
    const prices = await Promise.all(sent.map((result) => result.get({ timeout: 5_000 })));
    assert.deepEqual(prices, [120, 90, 45, 120, 90, 45, 120, 90, 45, 120]);
    // flushEvery: 5 → two catalog calls of 5 SKUs each.
    assert.deepEqual(
      priceMany.mock.calls.map((call) => call.arguments[0]),
      [skus.slice(0, 5), skus.slice(5)],
    );
  });

  it('app.close() flushes what the worker has buffered', async (t) => {
    const moduleRef = await Test.createTestingModule({
      imports: [BatchesModule.forRoot()],
      providers: [Catalog, PriceHandler],
    }).compile();
    const app = moduleRef.createNestApplication();
    app.connectMicroservice({ strategy: app.get(BatchesServer) });
    await app.startAllMicroservices();
    await app.init();
    const priceMany = t.mock.method(app.get(Catalog), 'priceMany');

    // 3 requests: fewer than flushEvery (5), and flushInterval (60 s) is far away.
    for (const sku of ['apple', 'pear', 'plum']) await app.get(BatchClient).delay('price', sku);
    await app.close();
    assert.deepEqual(
      priceMany.mock.calls.map((call) => call.arguments[0]),
      [['apple', 'pear', 'plum']],
    );
  });
});
