// Fixture of test/packaging.test.ts: copied into throwaway apps that install the packed tarball.
// The same source compiles as ESM (nodenext, "type": "module") and as CommonJS (nodenext or commonjs).
import { Controller, Get, Injectable, Module, Param } from '@nestjs/common';
import { ConfigModule, ConfigService } from '@nestjs/config';
import { BatchClient, BatchesModule, BatchHandler, type SimpleRequest } from 'nestjs-batches';

@Injectable()
export class DoublingService {
  readonly batchSizes: number[] = [];

  @BatchHandler('double', { flushEvery: 10, flushInterval: 50 })
  double(requests: SimpleRequest<[number]>[]): number[] {
    this.batchSizes.push(requests.length);
    return requests.map((request) => request.args[0] * 2);
  }
}

@Controller()
export class DoubleController {
  constructor(private readonly client: BatchClient) {}

  @Get('double/:n')
  async double(@Param('n') n: string): Promise<number> {
    const result = await this.client.delay<number>('double', Number(n));
    return result.get({ timeout: 5000 });
  }
}

@Module({
  imports: [
    ConfigModule.forRoot({ ignoreEnvFile: true, load: [() => ({ BROKER_URL: 'memory://' })] }),
    BatchesModule.forRootAsync({
      imports: [ConfigModule],
      inject: [ConfigService],
      useFactory: (config: ConfigService) => ({ broker: config.getOrThrow<string>('BROKER_URL') }),
    }),
  ],
  controllers: [DoubleController],
  providers: [DoublingService],
})
export class AppModule {}
