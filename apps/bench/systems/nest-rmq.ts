import { Controller, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Ctx, EventPattern, RmqContext, Transport, type MicroserviceOptions } from '@nestjs/microservices';
import type { Channel, Message } from 'amqplib';
import { AMQP_URL, drainWith, MeasuredWindow, type Measurement, type RunOptions } from '../measurement.js';

/** Nest's built-in RMQ transport: an @EventPattern no-op, acking each message through RmqContext; `variant` names the backlog. */
export async function nestRmq({ n, queue, variant }: RunOptions): Promise<Measurement> {
  let handled = 0;
  const window = new MeasuredWindow();

  @Controller()
  class NoOpController {
    @EventPattern('bench.noop')
    // Nest 12 types pattern handlers' extra parameters as unknown.
    handle(_data: unknown, @Ctx() ctx: unknown): void {
      const context = ctx as RmqContext;
      window.begin();
      (context.getChannelRef() as Channel).ack(context.getMessage() as Message);
      if (++handled === n) window.end();
    }
  }

  @Module({ controllers: [NoOpController] })
  class NestRmqModule {}

  const app = await NestFactory.createMicroservice<MicroserviceOptions>(NestRmqModule, {
    transport: Transport.RMQ,
    options: { urls: [AMQP_URL], queue, noAck: false, prefetchCount: 1000, queueOptions: { durable: true } },
    logger: ['error'],
  });
  return drainWith(app, window, `Nest's RMQ transport${variant ? `, ${variant}` : ''}`, n);
}
