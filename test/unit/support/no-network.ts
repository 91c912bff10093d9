/**
 * Imported first by every unit test: the unit lane runs with no services, so any attempt to open
 * a TCP (or TLS) connection, to RabbitMQ, Redis or anything else, throws instead of connecting.
 */
import net from 'node:net';

const refuse = function (this: net.Socket): never {
  throw new Error('a unit test tried to open a network connection; the unit lane must need no services (move it to test/*.test.ts)');
};

net.Socket.prototype.connect = refuse as unknown as net.Socket['connect'];
